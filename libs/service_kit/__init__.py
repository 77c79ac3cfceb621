"""Mechanics every nameko service shares: store (transactions with outbox, inbox and command
log), outbox relay, reliable event consumption with retries and dead letters, metrics,
health endpoints, auth scope checks and the process runner."""
