//! The composition of the billing process manager: `projections::billing` reads the log and
//! decides when an invoice is due; `commands::billing` issues it. This adapter is the
//! [`Issuer`] that joins them (the two crates never call each other).

use std::sync::Arc;

use commands::billing::{issue_for, Charge, Mode, Outcome};
use domain::clock::Services;
use domain::ids::{AppointmentId, ClinicId};
use domain::invoice::Basis;
use futures::future::BoxFuture;
use projections::billing::{BillingConfig, Issued, Issuer, Trigger};
use sqlx::PgConnection;

/// Issues invoices with the `commands` use case, on the process manager's transaction.
pub struct CommandIssuer {
    pub services: Services,
}

impl Issuer for CommandIssuer {
    fn issue<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        trigger: &'a Trigger,
    ) -> BoxFuture<'a, Result<Issued, String>> {
        Box::pin(async move {
            let charge = Charge {
                clinic_id: ClinicId::from_uuid(trigger.clinic_id),
                appointment_id: AppointmentId::from_uuid(trigger.appointment_id),
                basis: match trigger.basis {
                    projections::billing::Basis::Visit => Basis::Visit,
                    projections::billing::Basis::NoShow => Basis::NoShow,
                },
                transaction_id: trigger.transaction_id.clone(),
                position: trigger.position,
            };
            let outcome = issue_for(conn, self.services.clone(), &charge, Mode::Live)
                .await
                .map_err(|e| e.to_string())?;
            Ok(match outcome {
                Outcome::Issued { invoice_id, .. } => {
                    tracing::info!(clinic_id = %charge.clinic_id, invoice_id = %invoice_id, "draft invoice issued");
                    Issued::New
                }
                Outcome::AlreadyIssued(_) => Issued::Existing,
                Outcome::Skipped(skip) => Issued::Skipped(skip.as_str()),
            })
        })
    }
}

/// The process manager's configuration with the `commands` issuer, deciding with `services`.
pub fn config(services: Services) -> BillingConfig {
    BillingConfig::new(Arc::new(CommandIssuer { services }))
}
