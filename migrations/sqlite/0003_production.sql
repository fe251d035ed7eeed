-- Production mode: which replica claimed an outbox row, and lead events for the CRM webhook.

-- The instance that claimed a row while it is `sending`; a row claimed by a replica that died
-- is put back by the survivors.
ALTER TABLE outbox ADD COLUMN claimed_by BIGINT;

-- Lead events POSTed to LEADBOT_CRM_WEBHOOK_URL, enqueued in the transaction of the change.
CREATE TABLE crm_events (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT NOT NULL UNIQUE,
    event           TEXT NOT NULL,
    lead_id         BIGINT NOT NULL,
    payload         TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending',
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_error      TEXT,
    claimed_by      BIGINT,
    created_at      BIGINT NOT NULL,
    delivered_at    BIGINT
);
CREATE INDEX crm_events_due ON crm_events (status, next_attempt_at);
CREATE INDEX crm_events_lead ON crm_events (lead_id, status, id);
