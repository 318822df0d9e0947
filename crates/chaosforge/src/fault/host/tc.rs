//! Traffic control: rate limits (htb, u32, ifb) and netem where the kernel has it.
