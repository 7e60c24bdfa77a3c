//! The `Invoice` aggregate (issue 14, its domain only so far): one invoice per billed visit
//! (or no-show), in the clinic's currency, in integer minor units.
//!
//! Life: `draft` (issued from a fulfilled appointment, lines may be added) → `issued`
//! (finalised, numbered) → `partially-paid` → `paid`; `void` from `draft` or `issued` when
//! nothing paid is left. A refund takes back part or all of what was paid, and the status
//! follows what is still paid. Statuses follow FHIR Invoice where its names fit
//! (`draft`, `issued`); the payment states are this service's.

use std::fmt;

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::error::{DomainError, ErrorKind};
use crate::ids::{AppointmentId, ClinicId, InvoiceId, PatientId, PaymentId, StaffId};
use crate::values::{Amount, Currency, NonEmptyText, PaymentMethod, ValueError};

/// An invoice's number: gap-free per clinic, taken when it is finalised: `INV-2027-000001`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InvoiceNumber(String);

impl InvoiceNumber {
    /// The `n`th number of `year` (n ≥ 1).
    pub fn new(year: i32, n: u64) -> Result<Self, ValueError> {
        if !(1000..=9999).contains(&year) || n == 0 || n > 999_999 {
            return Err(ValueError::InvalidInvoiceNumber);
        }
        Ok(InvoiceNumber(format!("INV-{year}-{n:06}")))
    }

    pub fn parse(input: impl AsRef<str>) -> Result<Self, ValueError> {
        let text = input.as_ref().trim();
        let rest = text
            .strip_prefix("INV-")
            .ok_or(ValueError::InvalidInvoiceNumber)?;
        let (year, n) = rest
            .split_once('-')
            .ok_or(ValueError::InvalidInvoiceNumber)?;
        if year.len() != 4
            || n.len() != 6
            || !(year.chars().chain(n.chars())).all(|c| c.is_ascii_digit())
        {
            return Err(ValueError::InvalidInvoiceNumber);
        }
        let year = year.parse().map_err(|_| ValueError::InvalidInvoiceNumber)?;
        let n = n.parse().map_err(|_| ValueError::InvalidInvoiceNumber)?;
        InvoiceNumber::new(year, n)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InvoiceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for InvoiceNumber {
    type Error = ValueError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        InvoiceNumber::parse(s)
    }
}

impl From<InvoiceNumber> for String {
    fn from(n: InvoiceNumber) -> Self {
        n.0
    }
}

/// What an invoice bills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// A visit that was fulfilled.
    Visit,
    /// A no-show the clinic charges for.
    NoShow,
}

/// One line of an invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceLine {
    pub description: NonEmptyText,
    pub amount: Amount,
}

/// An invoice as issued (a draft): what `Issue` asks for and `InvoiceIssued` records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewInvoice {
    pub invoice_id: InvoiceId,
    pub clinic_id: ClinicId,
    pub appointment_id: AppointmentId,
    pub patient_id: PatientId,
    pub doctor_id: StaffId,
    pub basis: Basis,
    pub currency: Currency,
    /// The fee that applied when the visit was completed, and any other lines.
    pub lines: Vec<InvoiceLine>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum InvoiceCommand {
    Issue(NewInvoice),
    AddLine(InvoiceLine),
    /// Numbers the draft and makes it payable; the number is taken in the same transaction.
    Finalise {
        number: InvoiceNumber,
    },
    RecordPayment {
        payment_id: PaymentId,
        amount: Amount,
        method: PaymentMethod,
        reference: Option<NonEmptyText>,
    },
    Refund {
        amount: Amount,
        reason: NonEmptyText,
    },
    Void {
        reason: NonEmptyText,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum InvoiceEvent {
    InvoiceIssued(NewInvoice),
    InvoiceLineAdded(InvoiceLine),
    InvoiceFinalised {
        number: InvoiceNumber,
        /// The sum of the lines, in minor units.
        total: i64,
    },
    PaymentRecorded {
        payment_id: PaymentId,
        amount: Amount,
        method: PaymentMethod,
        reference: Option<NonEmptyText>,
    },
    PaymentRefunded {
        amount: Amount,
        reason: NonEmptyText,
    },
    InvoiceVoided {
        reason: NonEmptyText,
    },
}

impl DomainEvent for InvoiceEvent {
    fn event_type(&self) -> String {
        match self {
            InvoiceEvent::InvoiceIssued(_) => "InvoiceIssued",
            InvoiceEvent::InvoiceLineAdded(_) => "InvoiceLineAdded",
            InvoiceEvent::InvoiceFinalised { .. } => "InvoiceFinalised",
            InvoiceEvent::PaymentRecorded { .. } => "PaymentRecorded",
            InvoiceEvent::PaymentRefunded { .. } => "PaymentRefunded",
            InvoiceEvent::InvoiceVoided { .. } => "InvoiceVoided",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvoiceError {
    #[error("invoice not found")]
    NotFound,
    #[error("the invoice is already issued")]
    AlreadyIssued,
    #[error("only a draft invoice can be changed or finalised; this one is {0}")]
    NotDraft(InvoiceStatus),
    #[error("an invoice needs at least one line")]
    NoLines,
    #[error("the invoice's total would exceed the largest amount")]
    TotalTooLarge,
    #[error("only an issued or partially paid invoice takes payments; this one is {0}")]
    NotPayable(InvoiceStatus),
    #[error("the payment {0} is already recorded")]
    PaymentAlreadyRecorded(PaymentId),
    #[error("the payment exceeds the balance of {balance}")]
    PaymentOverBalance { balance: i64 },
    #[error("the refund exceeds what was paid and not refunded ({refundable})")]
    RefundOverPaid { refundable: i64 },
    #[error("the invoice is already void")]
    AlreadyVoid,
    #[error("refund the {0} paid before voiding the invoice")]
    PaidNotRefunded(i64),
}

impl InvoiceError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            InvoiceError::NotFound => ErrorKind::NotFound,
            InvoiceError::NoLines
            | InvoiceError::TotalTooLarge
            | InvoiceError::PaymentOverBalance { .. }
            | InvoiceError::RefundOverPaid { .. } => ErrorKind::Invalid,
            _ => ErrorKind::Conflict,
        }
    }

    pub fn field(&self) -> Option<&'static str> {
        match self {
            InvoiceError::NoLines => Some("lines"),
            InvoiceError::TotalTooLarge
            | InvoiceError::PaymentOverBalance { .. }
            | InvoiceError::RefundOverPaid { .. } => Some("amount"),
            InvoiceError::PaymentAlreadyRecorded(_) => Some("payment_id"),
            _ => None,
        }
    }
}

impl DomainError for InvoiceError {
    fn kind(&self) -> ErrorKind {
        InvoiceError::kind(self)
    }

    fn field(&self) -> Option<&'static str> {
        InvoiceError::field(self)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InvoiceStatus {
    /// No invoice yet.
    #[default]
    Unissued,
    Draft,
    Issued,
    PartiallyPaid,
    Paid,
    Void,
}

impl fmt::Display for InvoiceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InvoiceStatus::Unissued => "unissued",
            InvoiceStatus::Draft => "draft",
            InvoiceStatus::Issued => "issued",
            InvoiceStatus::PartiallyPaid => "partially-paid",
            InvoiceStatus::Paid => "paid",
            InvoiceStatus::Void => "void",
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Invoice {
    new: Option<NewInvoice>,
    lines: Vec<InvoiceLine>,
    number: Option<InvoiceNumber>,
    status: InvoiceStatus,
    /// Every payment recorded, in minor units.
    paid: i64,
    /// Every refund, in minor units.
    refunded: i64,
    payments: Vec<PaymentId>,
}

impl Invoice {
    pub fn status(&self) -> InvoiceStatus {
        self.status
    }

    pub fn number(&self) -> Option<&InvoiceNumber> {
        self.number.as_ref()
    }

    pub fn issued(&self) -> Option<&NewInvoice> {
        self.new.as_ref()
    }

    pub fn lines(&self) -> &[InvoiceLine] {
        &self.lines
    }

    /// The sum of the lines, in minor units.
    pub fn total(&self) -> i64 {
        self.lines.iter().map(|l| l.amount.minor()).sum()
    }

    /// Every payment recorded, in minor units.
    pub fn paid(&self) -> i64 {
        self.paid
    }

    /// Every refund, in minor units.
    pub fn refunded(&self) -> i64 {
        self.refunded
    }

    /// What was paid and not refunded.
    pub fn net_paid(&self) -> i64 {
        self.paid - self.refunded
    }

    /// What is still to pay (0 for a draft or a void invoice).
    pub fn balance(&self) -> i64 {
        match self.status {
            InvoiceStatus::Issued | InvoiceStatus::PartiallyPaid | InvoiceStatus::Paid => {
                self.total() - self.net_paid()
            }
            _ => 0,
        }
    }

    /// The status that `net_paid` of `total` gives a finalised invoice.
    fn paid_status(total: i64, net_paid: i64) -> InvoiceStatus {
        if net_paid <= 0 {
            InvoiceStatus::Issued
        } else if net_paid < total {
            InvoiceStatus::PartiallyPaid
        } else {
            InvoiceStatus::Paid
        }
    }

    fn ensure_draft(&self) -> Result<(), InvoiceError> {
        match self.status {
            InvoiceStatus::Unissued => Err(InvoiceError::NotFound),
            InvoiceStatus::Draft => Ok(()),
            other => Err(InvoiceError::NotDraft(other)),
        }
    }

    fn ensure_total_fits(lines: &[InvoiceLine]) -> Result<(), InvoiceError> {
        let total: i64 = lines.iter().map(|l| l.amount.minor()).sum();
        if total > Amount::MAX {
            return Err(InvoiceError::TotalTooLarge);
        }
        Ok(())
    }

    /// Decides which events a command produces, without changing state.
    pub fn decide(&self, command: InvoiceCommand) -> Result<Vec<InvoiceEvent>, InvoiceError> {
        use InvoiceCommand as C;
        use InvoiceEvent as E;
        match command {
            C::Issue(new) => {
                if self.status != InvoiceStatus::Unissued {
                    return Err(InvoiceError::AlreadyIssued);
                }
                Self::ensure_total_fits(&new.lines)?;
                Ok(vec![E::InvoiceIssued(new)])
            }
            C::AddLine(line) => {
                self.ensure_draft()?;
                let mut lines = self.lines.clone();
                lines.push(line.clone());
                Self::ensure_total_fits(&lines)?;
                Ok(vec![E::InvoiceLineAdded(line)])
            }
            C::Finalise { number } => {
                self.ensure_draft()?;
                if self.lines.is_empty() {
                    return Err(InvoiceError::NoLines);
                }
                Ok(vec![E::InvoiceFinalised {
                    number,
                    total: self.total(),
                }])
            }
            C::RecordPayment {
                payment_id,
                amount,
                method,
                reference,
            } => {
                match self.status {
                    InvoiceStatus::Unissued => return Err(InvoiceError::NotFound),
                    InvoiceStatus::Issued | InvoiceStatus::PartiallyPaid => {}
                    other => return Err(InvoiceError::NotPayable(other)),
                }
                if self.payments.contains(&payment_id) {
                    return Err(InvoiceError::PaymentAlreadyRecorded(payment_id));
                }
                let balance = self.balance();
                if amount.minor() > balance {
                    return Err(InvoiceError::PaymentOverBalance { balance });
                }
                Ok(vec![E::PaymentRecorded {
                    payment_id,
                    amount,
                    method,
                    reference,
                }])
            }
            C::Refund { amount, reason } => {
                if self.status == InvoiceStatus::Unissued {
                    return Err(InvoiceError::NotFound);
                }
                let refundable = self.net_paid();
                if amount.minor() > refundable {
                    return Err(InvoiceError::RefundOverPaid { refundable });
                }
                Ok(vec![E::PaymentRefunded { amount, reason }])
            }
            C::Void { reason } => match self.status {
                InvoiceStatus::Unissued => Err(InvoiceError::NotFound),
                InvoiceStatus::Void => Err(InvoiceError::AlreadyVoid),
                _ if self.net_paid() > 0 => Err(InvoiceError::PaidNotRefunded(self.net_paid())),
                _ => Ok(vec![E::InvoiceVoided { reason }]),
            },
        }
    }

    /// How an event changes the state (cqrs-es's `Aggregate::apply`).
    fn evolve(&mut self, event: InvoiceEvent) {
        match event {
            InvoiceEvent::InvoiceIssued(new) => {
                self.lines = new.lines.clone();
                self.new = Some(new);
                self.status = InvoiceStatus::Draft;
            }
            InvoiceEvent::InvoiceLineAdded(line) => self.lines.push(line),
            InvoiceEvent::InvoiceFinalised { number, .. } => {
                self.number = Some(number);
                self.status = InvoiceStatus::Issued;
            }
            InvoiceEvent::PaymentRecorded {
                payment_id, amount, ..
            } => {
                self.paid += amount.minor();
                self.payments.push(payment_id);
                self.status = Self::paid_status(self.total(), self.net_paid());
            }
            InvoiceEvent::PaymentRefunded { amount, .. } => {
                self.refunded += amount.minor();
                if self.status != InvoiceStatus::Void {
                    self.status = Self::paid_status(self.total(), self.net_paid());
                }
            }
            InvoiceEvent::InvoiceVoided { .. } => self.status = InvoiceStatus::Void,
        }
    }
}

crate::aggregate!(
    Invoice,
    "Invoice",
    InvoiceCommand,
    InvoiceEvent,
    InvoiceError,
    decide
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{services, text};
    use cqrs_es::test::TestFramework;
    use cqrs_es::Aggregate;
    use uuid::Uuid;

    type Fx = TestFramework<Invoice>;

    fn fx() -> Fx {
        TestFramework::with(services())
    }

    fn amount(minor: i64) -> Amount {
        Amount::new(minor).unwrap()
    }

    fn line(description: &str, minor: i64) -> InvoiceLine {
        InvoiceLine {
            description: text(description),
            amount: amount(minor),
        }
    }

    fn new_invoice() -> NewInvoice {
        let appointment = AppointmentId::from_uuid(Uuid::from_u128(7));
        NewInvoice {
            invoice_id: InvoiceId::of_appointment(appointment),
            clinic_id: ClinicId::from_uuid(Uuid::from_u128(1)),
            appointment_id: appointment,
            patient_id: PatientId::from_uuid(Uuid::from_u128(2)),
            doctor_id: StaffId::from_uuid(Uuid::from_u128(3)),
            basis: Basis::Visit,
            currency: Currency::parse("EUR").unwrap(),
            lines: vec![line("Consultation", 6_000)],
        }
    }

    fn issued() -> InvoiceEvent {
        InvoiceEvent::InvoiceIssued(new_invoice())
    }

    fn number(n: u64) -> InvoiceNumber {
        InvoiceNumber::new(2027, n).unwrap()
    }

    fn finalised() -> InvoiceEvent {
        InvoiceEvent::InvoiceFinalised {
            number: number(1),
            total: 6_000,
        }
    }

    fn pay_id(n: u128) -> PaymentId {
        PaymentId::from_uuid(Uuid::from_u128(100 + n))
    }

    fn paid(n: u128, minor: i64) -> InvoiceEvent {
        InvoiceEvent::PaymentRecorded {
            payment_id: pay_id(n),
            amount: amount(minor),
            method: PaymentMethod::Card,
            reference: None,
        }
    }

    fn pay(n: u128, minor: i64) -> InvoiceCommand {
        InvoiceCommand::RecordPayment {
            payment_id: pay_id(n),
            amount: amount(minor),
            method: PaymentMethod::Card,
            reference: None,
        }
    }

    fn refund(minor: i64) -> InvoiceCommand {
        InvoiceCommand::Refund {
            amount: amount(minor),
            reason: text("overcharged"),
        }
    }

    fn state(events: Vec<InvoiceEvent>) -> Invoice {
        let mut invoice = Invoice::default();
        for e in events {
            invoice.apply(e);
        }
        invoice
    }

    #[track_caller]
    fn refused(given: Vec<InvoiceEvent>, command: InvoiceCommand, error: InvoiceError) {
        let r = fx().given(given).when(command).inspect_result();
        assert_eq!(r, Err(error));
    }

    #[test]
    fn numbers_are_per_year_and_six_digits() {
        assert_eq!(number(1).as_str(), "INV-2027-000001");
        assert_eq!(InvoiceNumber::parse("INV-2027-000042").unwrap(), number(42));
        for bad in [
            "INV-2027-42",
            "INV-27-000001",
            "2027-000001",
            "INV-2027-000000",
            "INV-2027-00000a",
        ] {
            assert_eq!(
                InvoiceNumber::parse(bad),
                Err(ValueError::InvalidInvoiceNumber),
                "{bad}"
            );
        }
        assert!(InvoiceNumber::new(2027, 1_000_000).is_err());
    }

    #[test]
    fn an_invoice_is_issued_once_as_a_draft() {
        fx().given_no_previous_events()
            .when(InvoiceCommand::Issue(new_invoice()))
            .then_expect_events(vec![issued()]);
        refused(
            vec![issued()],
            InvoiceCommand::Issue(new_invoice()),
            InvoiceError::AlreadyIssued,
        );
        assert_eq!(state(vec![issued()]).status(), InvoiceStatus::Draft);
        assert_eq!(state(vec![issued()]).balance(), 0, "a draft is not due yet");
    }

    #[test]
    fn lines_are_added_to_a_draft_only() {
        fx().given(vec![issued()])
            .when(InvoiceCommand::AddLine(line("ECG", 2_500)))
            .then_expect_events(vec![InvoiceEvent::InvoiceLineAdded(line("ECG", 2_500))]);
        refused(
            vec![issued(), finalised()],
            InvoiceCommand::AddLine(line("ECG", 2_500)),
            InvoiceError::NotDraft(InvoiceStatus::Issued),
        );
        refused(
            vec![],
            InvoiceCommand::AddLine(line("ECG", 1)),
            InvoiceError::NotFound,
        );
        let huge = vec![
            issued(),
            InvoiceEvent::InvoiceLineAdded(line("A", Amount::MAX - 6_000)),
        ];
        refused(
            huge,
            InvoiceCommand::AddLine(line("B", 1)),
            InvoiceError::TotalTooLarge,
        );
    }

    #[test]
    fn finalising_numbers_the_invoice_with_its_total() {
        let with_line = vec![issued(), InvoiceEvent::InvoiceLineAdded(line("ECG", 2_500))];
        fx().given(with_line.clone())
            .when(InvoiceCommand::Finalise { number: number(1) })
            .then_expect_events(vec![InvoiceEvent::InvoiceFinalised {
                number: number(1),
                total: 8_500,
            }]);
        let mut empty = new_invoice();
        empty.lines.clear();
        refused(
            vec![InvoiceEvent::InvoiceIssued(empty)],
            InvoiceCommand::Finalise { number: number(1) },
            InvoiceError::NoLines,
        );
        refused(
            vec![issued(), finalised()],
            InvoiceCommand::Finalise { number: number(2) },
            InvoiceError::NotDraft(InvoiceStatus::Issued),
        );
        let invoice = state(vec![issued(), finalised()]);
        assert_eq!(
            (invoice.status(), invoice.balance()),
            (InvoiceStatus::Issued, 6_000)
        );
        assert_eq!(invoice.number(), Some(&number(1)));
    }

    #[test]
    fn payments_move_an_invoice_to_partially_paid_then_paid_and_never_past_the_balance() {
        let open = vec![issued(), finalised()];
        fx().given(open.clone())
            .when(pay(1, 2_000))
            .then_expect_events(vec![paid(1, 2_000)]);
        let part = state(vec![issued(), finalised(), paid(1, 2_000)]);
        assert_eq!(
            (part.status(), part.balance()),
            (InvoiceStatus::PartiallyPaid, 4_000)
        );
        let full = state(vec![issued(), finalised(), paid(1, 2_000), paid(2, 4_000)]);
        assert_eq!((full.status(), full.balance()), (InvoiceStatus::Paid, 0));
        // More than the balance (twice it, or a cent over) is refused, naming the amount.
        refused(
            open.clone(),
            pay(1, 12_000),
            InvoiceError::PaymentOverBalance { balance: 6_000 },
        );
        refused(
            vec![issued(), finalised(), paid(1, 2_000)],
            pay(2, 4_001),
            InvoiceError::PaymentOverBalance { balance: 4_000 },
        );
        assert_eq!(
            InvoiceError::PaymentOverBalance { balance: 1 }.field(),
            Some("amount")
        );
        // Not on a draft, a paid or a void invoice; one payment id once.
        refused(
            vec![issued()],
            pay(1, 1),
            InvoiceError::NotPayable(InvoiceStatus::Draft),
        );
        refused(
            vec![issued(), finalised(), paid(1, 6_000)],
            pay(2, 1),
            InvoiceError::NotPayable(InvoiceStatus::Paid),
        );
        refused(
            vec![issued(), finalised(), paid(1, 2_000)],
            pay(1, 1_000),
            InvoiceError::PaymentAlreadyRecorded(pay_id(1)),
        );
        refused(vec![], pay(1, 1), InvoiceError::NotFound);
    }

    #[test]
    fn refunds_take_back_at_most_what_was_paid_and_the_status_follows() {
        let paid_in_full = vec![issued(), finalised(), paid(1, 6_000)];
        fx().given(paid_in_full.clone())
            .when(refund(1_000))
            .then_expect_events(vec![InvoiceEvent::PaymentRefunded {
                amount: amount(1_000),
                reason: text("overcharged"),
            }]);
        refused(
            paid_in_full.clone(),
            refund(6_001),
            InvoiceError::RefundOverPaid { refundable: 6_000 },
        );
        refused(
            vec![issued(), finalised()],
            refund(1),
            InvoiceError::RefundOverPaid { refundable: 0 },
        );
        let refunded_part = [
            paid_in_full.clone(),
            vec![InvoiceEvent::PaymentRefunded {
                amount: amount(1_000),
                reason: text("overcharged"),
            }],
        ]
        .concat();
        let invoice = state(refunded_part.clone());
        assert_eq!(
            (invoice.status(), invoice.balance()),
            (InvoiceStatus::PartiallyPaid, 1_000)
        );
        refused(
            refunded_part,
            refund(5_001),
            InvoiceError::RefundOverPaid { refundable: 5_000 },
        );
        let all_back = state(
            [
                paid_in_full,
                vec![InvoiceEvent::PaymentRefunded {
                    amount: amount(6_000),
                    reason: text("cancelled visit"),
                }],
            ]
            .concat(),
        );
        assert_eq!(
            (all_back.status(), all_back.net_paid()),
            (InvoiceStatus::Issued, 0)
        );
    }

    #[test]
    fn only_an_invoice_with_nothing_paid_left_is_voided() {
        let void = InvoiceCommand::Void {
            reason: text("billed in error"),
        };
        let voided = InvoiceEvent::InvoiceVoided {
            reason: text("billed in error"),
        };
        fx().given(vec![issued()])
            .when(void.clone())
            .then_expect_events(vec![voided.clone()]);
        fx().given(vec![issued(), finalised()])
            .when(void.clone())
            .then_expect_events(vec![voided.clone()]);
        refused(
            vec![issued(), finalised(), paid(1, 2_000)],
            void.clone(),
            InvoiceError::PaidNotRefunded(2_000),
        );
        refused(
            vec![issued(), voided.clone()],
            void.clone(),
            InvoiceError::AlreadyVoid,
        );
        refused(
            vec![issued(), voided.clone()],
            pay(1, 1),
            InvoiceError::NotPayable(InvoiceStatus::Void),
        );
        refused(vec![], void, InvoiceError::NotFound);
        let invoice = state(vec![issued(), finalised(), voided]);
        assert_eq!(
            (invoice.status(), invoice.balance()),
            (InvoiceStatus::Void, 0)
        );
    }

    #[test]
    fn events_have_stable_types_and_round_trip() {
        let events = vec![
            issued(),
            InvoiceEvent::InvoiceLineAdded(line("ECG", 2_500)),
            finalised(),
            paid(1, 100),
            InvoiceEvent::PaymentRefunded {
                amount: amount(100),
                reason: text("x"),
            },
            InvoiceEvent::InvoiceVoided { reason: text("y") },
        ];
        let types: Vec<String> = events.iter().map(DomainEvent::event_type).collect();
        assert_eq!(
            types,
            [
                "InvoiceIssued",
                "InvoiceLineAdded",
                "InvoiceFinalised",
                "PaymentRecorded",
                "PaymentRefunded",
                "InvoiceVoided"
            ]
        );
        for e in events {
            let json = serde_json::to_value(&e).unwrap();
            assert_eq!(serde_json::from_value::<InvoiceEvent>(json).unwrap(), e);
        }
        let json = serde_json::to_value(finalised()).unwrap();
        assert_eq!(json["InvoiceFinalised"]["number"], "INV-2027-000001");
        let json = serde_json::to_value(paid(1, 250)).unwrap();
        assert_eq!(json["PaymentRecorded"]["amount"], 250);
        assert_eq!(json["PaymentRecorded"]["method"], "card");
        assert_eq!(
            serde_json::to_value(InvoiceStatus::PartiallyPaid).unwrap(),
            "partially-paid"
        );
    }
}
