//! Integration tests of alert-service against real peers (testbed): Alertmanager, an SMTP server
//! and HTTP sinks standing in for Slack, Teams and webhook endpoints.

mod helpers;

mod alertmanager_e2e;
mod channels;
mod escalation;
mod intake;
mod outage;
mod postgres;
