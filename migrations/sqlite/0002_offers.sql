-- Broadcasts (limited-time offers), their recipients and clicks, and dialogue reminders.
-- SQLite dialect. Times are Unix milliseconds (UTC).

CREATE TABLE broadcasts (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    text                TEXT NOT NULL,
    button              TEXT,
    segment             TEXT NOT NULL,
    score               INTEGER NOT NULL DEFAULT 30,
    -- scheduled → running → done, or cancelled
    status              TEXT NOT NULL DEFAULT 'scheduled',
    start_at            BIGINT NOT NULL,
    expires_at          BIGINT NOT NULL,
    created_at          BIGINT NOT NULL,
    created_by          TEXT,
    started_at          BIGINT,
    finished_at         BIGINT,
    cancelled_at        BIGINT,
    recall_requested_at BIGINT,
    total               INTEGER NOT NULL DEFAULT 0,
    paused_until        BIGINT,
    progress_message_id BIGINT,
    progress_at         BIGINT
);
CREATE INDEX broadcasts_status ON broadcasts (status, start_at);

-- One row per lead a broadcast goes to, materialised when it starts. A row is claimed
-- ('sending') in its own committed write before the request; a row found 'sending' after a
-- crash becomes 'unknown' and is never sent again.
CREATE TABLE broadcast_recipients (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    broadcast_id        BIGINT NOT NULL REFERENCES broadcasts (id),
    lead_id             BIGINT NOT NULL REFERENCES leads (id),
    chat_id             BIGINT NOT NULL,
    language_code       TEXT,
    status              TEXT NOT NULL DEFAULT 'pending',
    attempts            INTEGER NOT NULL DEFAULT 0,
    next_attempt_at     BIGINT NOT NULL,
    claimed_at          BIGINT,
    sent_at             BIGINT,
    telegram_message_id BIGINT,
    last_error          TEXT,
    -- NULL, then 'pending' → 'deleting' → 'done' | 'failed' | 'too_late' once a recall is asked
    recall              TEXT,
    UNIQUE (broadcast_id, lead_id)
);
-- In id order, so the next due recipient is the first entry whose time has come.
CREATE INDEX broadcast_recipients_due ON broadcast_recipients (broadcast_id, status, id);
CREATE INDEX broadcast_recipients_lead ON broadcast_recipients (lead_id, claimed_at);
CREATE INDEX broadcast_recipients_recall ON broadcast_recipients (recall);

-- One click per lead and offer.
CREATE TABLE offer_clicks (
    broadcast_id BIGINT NOT NULL REFERENCES broadcasts (id),
    lead_id      BIGINT NOT NULL REFERENCES leads (id),
    clicked_at   BIGINT NOT NULL,
    PRIMARY KEY (broadcast_id, lead_id)
);

-- Reminders for a lead silent mid-dialogue: how many were sent since its last inbound message.
CREATE TABLE lead_reminders (
    lead_id         BIGINT PRIMARY KEY REFERENCES leads (id),
    last_inbound_at BIGINT NOT NULL,
    sent            INTEGER NOT NULL,
    next_at         BIGINT,
    updated_at      BIGINT NOT NULL
);

-- Reminder rounds look only at leads silent for less than 30 days.
CREATE INDEX leads_last_inbound ON leads (last_inbound_at);

-- State of the staff chat's guided /broadcast flow, per manager and chat.
CREATE TABLE broadcast_drafts (
    chat_id    BIGINT NOT NULL,
    user_id    BIGINT NOT NULL,
    draft      TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (chat_id, user_id)
);
