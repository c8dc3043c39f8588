//! Integration tests against real PostgreSQL and ClickHouse servers (one
//! test binary, so the servers start once).

mod support;

mod bad_rows;
mod chat_formats;
mod cli;
mod clickhouse_migrations;
mod clickhouse_tls;
mod cluster;
mod config;
mod daemon;
mod delivery;
mod delivery_client;
mod delivery_rate;
mod delivery_unattended;
mod deploy;
mod differential;
mod docs;
mod goal_matching;
mod health;
mod install;
mod leadership;
mod pgoutput;
mod postgres_schema;
mod postgres_tls;
mod receiver_options;
mod registry;
mod replication;
mod retention;
mod signing;
mod status;
mod triggers;
