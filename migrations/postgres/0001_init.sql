-- leadbot schema, PostgreSQL dialect. Times are Unix milliseconds (UTC).

CREATE TABLE dialogue_versions (
    version     TEXT PRIMARY KEY,
    dialogue_id TEXT NOT NULL,
    locale      TEXT NOT NULL,
    file_name   TEXT NOT NULL,
    source      TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE leads (
    id                         BIGSERIAL PRIMARY KEY,
    telegram_id                BIGINT UNIQUE,
    chat_id                    BIGINT,
    username                   TEXT,
    first_name                 TEXT,
    last_name                  TEXT,
    language_code              TEXT,
    name                       TEXT,
    phone                      TEXT,
    email                      TEXT,
    source                     TEXT NOT NULL,
    score                      INTEGER NOT NULL DEFAULT 0,
    temperature                TEXT NOT NULL DEFAULT 'cold',
    status                     TEXT NOT NULL DEFAULT 'new',
    unsubscribed               BOOLEAN NOT NULL DEFAULT FALSE,
    blocked                    BOOLEAN NOT NULL DEFAULT FALSE,
    erased                     BOOLEAN NOT NULL DEFAULT FALSE,
    consent_at                 BIGINT,
    consent_version            TEXT,
    marketing_consent_at       BIGINT,
    marketing_consent_version  TEXT,
    dialogue_id                TEXT,
    dialogue_version           TEXT REFERENCES dialogue_versions (version),
    session                    TEXT NOT NULL DEFAULT '{"position":{"at":"not_started"}}',
    created_at                 BIGINT NOT NULL,
    last_activity_at           BIGINT NOT NULL,
    last_inbound_at            BIGINT,
    hot_at                     BIGINT,
    sla_reminders              INTEGER NOT NULL DEFAULT 0,
    first_reply_at             BIGINT,
    topic_id                   BIGINT,
    manager_id                 BIGINT,
    manager_name               TEXT,
    taken_at                   BIGINT,
    closed_at                  BIGINT
);
CREATE INDEX leads_temperature ON leads (temperature, score);
CREATE INDEX leads_created ON leads (created_at);

-- Every update Telegram delivered, stored before the polling offset moves past it.
CREATE TABLE updates (
    update_id    BIGINT PRIMARY KEY,
    user_id      BIGINT,
    payload      TEXT NOT NULL,
    received_at  BIGINT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    processed_at BIGINT,
    error        TEXT
);
CREATE INDEX updates_pending ON updates (processed_at, update_id);

-- The lead's history: every inbound and outbound message (until /forget).
CREATE TABLE messages (
    id                  BIGSERIAL PRIMARY KEY,
    lead_id             BIGINT NOT NULL REFERENCES leads (id),
    direction           TEXT NOT NULL,
    kind                TEXT NOT NULL,
    text                TEXT,
    update_id           BIGINT,
    outbox_id           BIGINT,
    telegram_message_id BIGINT,
    author_id           BIGINT,
    created_at          BIGINT NOT NULL
);
CREATE INDEX messages_lead ON messages (lead_id, id);

-- Steps entered, per lead, for the funnel (anonymous: survives /forget).
CREATE TABLE step_events (
    id          BIGSERIAL PRIMARY KEY,
    lead_id     BIGINT NOT NULL,
    dialogue_id TEXT NOT NULL,
    step        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX step_events_dialogue ON step_events (dialogue_id, step);

-- Side effects that must not be lost or doubled, delivered by the outbox worker.
CREATE TABLE outbox (
    id                  BIGSERIAL PRIMARY KEY,
    idempotency_key     TEXT NOT NULL UNIQUE,
    lead_id             BIGINT,
    chat_id             BIGINT NOT NULL,
    action              TEXT NOT NULL,
    status              TEXT NOT NULL DEFAULT 'pending',
    attempts            INTEGER NOT NULL DEFAULT 0,
    next_attempt_at     BIGINT NOT NULL,
    last_error          TEXT,
    created_at          BIGINT NOT NULL,
    sent_at             BIGINT,
    telegram_message_id BIGINT
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
CREATE INDEX outbox_chat ON outbox (chat_id, status, id);

CREATE TABLE kv (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
