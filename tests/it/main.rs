//! Integration tests against real PostgreSQL and ClickHouse servers (one
//! test binary, so the servers start once).

mod support;

mod clickhouse_migrations;
mod config;
mod daemon;
mod delivery;
mod delivery_client;
mod docs;
mod leadership;
mod postgres_schema;
mod registry;
mod signing;
mod triggers;
