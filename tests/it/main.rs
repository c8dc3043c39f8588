//! Integration tests against real PostgreSQL and ClickHouse servers (one
//! test binary, so the servers start once).

mod support;

mod bad_rows;
mod clickhouse_migrations;
mod config;
mod daemon;
mod delivery;
mod delivery_client;
mod docs;
mod postgres_schema;
mod registry;
mod retention;
mod signing;
mod triggers;
