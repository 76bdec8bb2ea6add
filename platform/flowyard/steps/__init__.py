"""The v1 core steps; each module registers one or two steps by entry point."""
