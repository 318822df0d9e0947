//! Host faults: faults that act on a host (the local one or a network namespace) rather than on
//! a proxy — partitions with nftables, kernel-level network degradation.
