-- Invoice numbers (issue 14): gap-free per clinic and year, `INV-2027-000001`. A number is
-- taken by the finalising command's own transaction, right before its append, from this
-- counter row, which stays locked until that transaction ends: a finalisation that rolls back
-- gives its number back with the counter, so no number is skipped and none is given twice.
-- One clinic's finalisations of a year queue on the row; other clinics do not wait.
CREATE TABLE invoice_counters
(
    clinic_id  uuid    NOT NULL,
    year       integer NOT NULL,
    last_value bigint  NOT NULL CHECK (last_value > 0),
    PRIMARY KEY (clinic_id, year)
);

REVOKE ALL ON invoice_counters FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE ON invoice_counters TO clinic_app;
