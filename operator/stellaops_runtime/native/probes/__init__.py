"""One BPF program part per concern (exec, syscalls, uprobes), sharing the prelude's filters and output."""
