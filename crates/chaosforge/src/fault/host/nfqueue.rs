//! NFQUEUE: a userspace delayer, corrupter and reorderer for kernels without netem.
