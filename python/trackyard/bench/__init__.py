"""`trackyard bench`: a load tester for any LiveKit-compatible server.

Simulated participants speak real LiveKit signaling (WebSocket, protobuf), real ICE, DTLS and
SRTP; their media is synthetic and lives in Rust (`engine.LoadGenerator`), so one machine
drives hundreds of them. See docs/benchmarks.md ("Harness").
"""
