"""Runtime evidence for the policy engine: reachability states, the RTS factor, the Evidence document."""
