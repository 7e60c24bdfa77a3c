-- The invoices read model (issue 14): one row per invoice, and one row per payment or refund.
--
-- `rm.invoices` holds an invoice as its events left it: the status (draft, issued,
-- partially-paid, paid, void), the number once finalised, the total, what was paid and
-- refunded, the balance still due (0 for a draft or a void invoice) and the lines as JSON.
-- `rm.invoice_payments` holds each payment and each refund with the instant it was recorded
-- (the event's `occurred_at`, never the clock), its amount in the invoice's currency and the
-- invoice's doctor and patient, so that "revenue this month" is one index range.
--
-- Every key starts with clinic_id; row-level security checks it as on the other read models.
-- `clinic rebuild` calls rm_create_invoices(schema) for fresh copies of both tables.
--
-- Indexes: the list's order and keyset is (issued_at, invoice_id), newest first, over the
-- clinic, a status, a patient or a doctor. Each carries what the sums over it read, so they
-- are index-only scans: the status index the currency and the balance (the amount
-- outstanding: issued and partially-paid invoices), the doctor's and the patient's the status
-- too (a doctor's outstanding amount, a patient's balance), the clinic-wide one the currency
-- and the status (invoices issued this month). The payments' (clinic_id, recorded_at) index
-- carries what revenue sums. Every sum reads one index range: this month's invoices or
-- payments, or the invoices still due; never a clinic's whole history.

CREATE FUNCTION rm_create_invoices(s text) RETURNS void
    LANGUAGE plpgsql AS
$$
BEGIN
    EXECUTE format('CREATE SCHEMA IF NOT EXISTS %I', s);
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO clinic_app, clinic_worker', s);
    EXECUTE format($ddl$
        CREATE TABLE %I.invoices
        (
            clinic_id      uuid        NOT NULL,
            invoice_id     uuid        NOT NULL,
            appointment_id uuid        NOT NULL,
            patient_id     uuid        NOT NULL,
            doctor_id      uuid        NOT NULL,
            -- visit | no_show
            basis          text        NOT NULL,
            -- draft | issued | partially-paid | paid | void
            status         text        NOT NULL,
            -- INV-YYYY-NNNNNN once finalised
            number         text,
            currency       text        NOT NULL,
            -- minor units of `currency`
            total          bigint      NOT NULL,
            paid           bigint      NOT NULL,
            refunded       bigint      NOT NULL,
            -- still due: total - (paid - refunded) once finalised; 0 for a draft or a void one
            balance        bigint      NOT NULL,
            -- [{description, amount}], in the order they were added
            lines          jsonb       NOT NULL,
            void_reason    text,
            issued_at      timestamptz NOT NULL,
            finalised_at   timestamptz,
            voided_at      timestamptz,
            updated_at     timestamptz NOT NULL,
            version        bigint      NOT NULL,
            PRIMARY KEY (clinic_id, invoice_id)
        )$ddl$, s);
    EXECUTE format('CREATE INDEX ON %I.invoices (clinic_id, issued_at, invoice_id) '
                   'INCLUDE (currency, status)', s);
    EXECUTE format('CREATE INDEX ON %I.invoices (clinic_id, status, issued_at, invoice_id) '
                   'INCLUDE (currency, balance)', s);
    EXECUTE format('CREATE INDEX ON %I.invoices (clinic_id, patient_id, issued_at, invoice_id) '
                   'INCLUDE (status, currency, balance, doctor_id)', s);
    EXECUTE format('CREATE INDEX ON %I.invoices (clinic_id, doctor_id, issued_at, invoice_id) '
                   'INCLUDE (status, currency, balance)', s);
    PERFORM rm_grant(s, 'invoices');
    EXECUTE format($p$CREATE POLICY tenant ON %I.invoices
        USING (clinic_id = nullif(current_setting('app.clinic_id', true), '')::uuid)$p$, s);

    EXECUTE format($ddl$
        CREATE TABLE %I.invoice_payments
        (
            clinic_id   uuid        NOT NULL,
            invoice_id  uuid        NOT NULL,
            -- the event's sequence in the invoice's stream
            seq         bigint      NOT NULL,
            -- payment | refund
            kind        text        NOT NULL,
            payment_id  uuid,
            -- minor units of `currency`, positive for both kinds
            amount      bigint      NOT NULL,
            currency    text        NOT NULL,
            method      text,
            reference   text,
            reason      text,
            patient_id  uuid        NOT NULL,
            doctor_id   uuid        NOT NULL,
            recorded_at timestamptz NOT NULL,
            PRIMARY KEY (clinic_id, invoice_id, seq)
        )$ddl$, s);
    EXECUTE format('CREATE INDEX ON %I.invoice_payments (clinic_id, recorded_at) '
                   'INCLUDE (kind, amount, currency, doctor_id)', s);
    PERFORM rm_grant(s, 'invoice_payments');
    EXECUTE format($p$CREATE POLICY tenant ON %I.invoice_payments
        USING (clinic_id = nullif(current_setting('app.clinic_id', true), '')::uuid)$p$, s);
END
$$;

SELECT rm_create_invoices('rm');

-- The worker starts from position zero: the invoices already in the store are projected by
-- the first batches (alone, until its checkpoint meets the others').
INSERT INTO projection_checkpoints (name) VALUES ('invoices');

-- The platform's billing figures, per clinic and currency: invoices issued in the clinic's
-- current calendar month (in its time zone, at `now`, the service clock's), drafts still open,
-- the amount outstanding (issued and partially-paid invoices) and the revenue of the month
-- (payments minus refunds recorded in it). The platform admin may not read the invoices
-- (row-level security); this function reads them as the worker role and gives back sums and
-- counts only, never an invoice or a patient. Each figure is one index range per clinic.
CREATE FUNCTION rm_platform_billing(now timestamptz)
    RETURNS TABLE (clinic_id uuid, currency text, invoices_this_month bigint, drafts bigint,
                   outstanding bigint, revenue_this_month bigint)
    LANGUAGE sql STABLE
    SECURITY DEFINER SET search_path = public AS
$$
WITH months AS (SELECT c.clinic_id,
                       date_trunc('month', now AT TIME ZONE c.time_zone) AT TIME ZONE c.time_zone AS month_start,
                       (date_trunc('month', now AT TIME ZONE c.time_zone) + interval '1 month')
                           AT TIME ZONE c.time_zone AS month_end
                FROM rm.clinics c),
     figures AS (SELECT m.clinic_id, i.currency, i.n AS issued, 0::bigint AS drafts, 0::bigint AS outstanding,
                        0::bigint AS revenue
                 FROM months m
                          CROSS JOIN LATERAL (SELECT v.currency, count(*) AS n
                                              FROM rm.invoices v
                                              WHERE v.clinic_id = m.clinic_id
                                                AND v.issued_at >= m.month_start
                                                AND v.issued_at < m.month_end
                                              GROUP BY v.currency) i
                 UNION ALL
                 SELECT m.clinic_id, d.currency, 0, d.n, 0, 0
                 FROM months m
                          CROSS JOIN LATERAL (SELECT v.currency, count(*) AS n
                                              FROM rm.invoices v
                                              WHERE v.clinic_id = m.clinic_id AND v.status = 'draft'
                                              GROUP BY v.currency) d
                 UNION ALL
                 SELECT m.clinic_id, o.currency, 0, 0, o.due, 0
                 FROM months m
                          CROSS JOIN LATERAL (SELECT v.currency, sum(v.balance)::bigint AS due
                                              FROM rm.invoices v
                                              WHERE v.clinic_id = m.clinic_id
                                                AND v.status IN ('issued', 'partially-paid')
                                              GROUP BY v.currency) o
                 UNION ALL
                 SELECT m.clinic_id, p.currency, 0, 0, 0, p.revenue
                 FROM months m
                          CROSS JOIN LATERAL (SELECT x.currency,
                                                     sum(CASE WHEN x.kind = 'payment' THEN x.amount ELSE -x.amount END)::bigint AS revenue
                                              FROM rm.invoice_payments x
                                              WHERE x.clinic_id = m.clinic_id
                                                AND x.recorded_at >= m.month_start
                                                AND x.recorded_at < m.month_end
                                              GROUP BY x.currency) p)
SELECT clinic_id, currency, sum(issued)::bigint, sum(drafts)::bigint, sum(outstanding)::bigint,
       sum(revenue)::bigint
FROM figures
GROUP BY clinic_id, currency
$$;
ALTER FUNCTION rm_platform_billing(timestamptz) OWNER TO clinic_worker;
REVOKE ALL ON FUNCTION rm_platform_billing(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION rm_platform_billing(timestamptz) TO clinic_app;
