//! Pure clinic domain model: aggregates, their commands and events, value types
//! and invariants. No IO, no async runtime, no SQL.
//!
//! Every aggregate uses [`clock::Services`] as its cqrs-es `Services`, so the
//! current time is always injected (and fixed in tests).

/// Implements cqrs-es's `Aggregate` for an aggregate whose inherent `decide` returns the events
/// a command leads to and whose inherent `evolve` applies one event. Every aggregate uses
/// [`clock::Services`]; `decide` names aggregates whose `decide` does not need them.
#[macro_export]
macro_rules! aggregate {
    ($aggregate:ty, $name:literal, $command:ty, $event:ty, $error:ty, decide_with_services) => {
        $crate::aggregate!(@impl $aggregate, $name, $command, $event, $error,
            |this, command, services| this.decide(command, services));
    };
    ($aggregate:ty, $name:literal, $command:ty, $event:ty, $error:ty, decide) => {
        $crate::aggregate!(@impl $aggregate, $name, $command, $event, $error,
            |this, command, _services| this.decide(command));
    };
    (@impl $aggregate:ty, $name:literal, $command:ty, $event:ty, $error:ty,
        |$this:ident, $cmd:ident, $services:ident| $decide:expr) => {
        impl cqrs_es::Aggregate for $aggregate {
            const TYPE: &'static str = $name;
            type Command = $command;
            type Event = $event;
            type Error = $error;
            type Services = $crate::clock::Services;

            async fn handle(
                &mut self,
                $cmd: Self::Command,
                $services: &Self::Services,
                sink: &cqrs_es::event_sink::EventSink<Self>,
            ) -> Result<(), Self::Error> {
                let $this = &*self;
                for event in $decide? {
                    sink.write(event, self).await;
                }
                Ok(())
            }

            fn apply(&mut self, event: Self::Event) {
                self.evolve(event)
            }
        }
    };
}

pub mod appointment;
pub mod clinic;
pub mod clock;
pub mod error;
pub mod fees;
pub mod ids;
pub mod invoice;
pub mod patient;
pub mod plan;
pub mod replay;
pub mod schedule;
pub mod staff;
pub mod values;

#[cfg(test)]
pub(crate) mod testing;
