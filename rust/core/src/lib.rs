//! trackyard's sans-IO media core: parsers, crypto and forwarding state for the media node.
//!
//! Nothing here owns a socket or reads a clock: callers pass packets and times in and get
//! packets, events and deadlines out, so every piece is testable with a simulated clock.
