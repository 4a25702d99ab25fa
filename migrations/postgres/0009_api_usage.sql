-- Constant Contact requests per application (API key) and UTC day, counted
-- by every process as it sends them, so the daily quota left is the same
-- everywhere and survives restarts. `exhausted_at` records Constant
-- Contact saying the day's quota is used up, which wins over our count.
CREATE TABLE api_usage (
    app TEXT NOT NULL,
    day BIGINT NOT NULL,
    requests BIGINT NOT NULL DEFAULT 0,
    exhausted_at BIGINT,
    PRIMARY KEY (app, day)
);
