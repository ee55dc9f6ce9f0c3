//! The process runtime (RuntimeClass `process`): a pod's containers run as plain
//! host processes, in the host's network, with no image and no isolation.
