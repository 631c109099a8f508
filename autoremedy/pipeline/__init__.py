"""The event pipeline: an event from any source, routed, spooled, forwarded to StackStorm or handed to the local fallback."""
