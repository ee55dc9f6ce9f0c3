//! ControllerRevision history shared by StatefulSet and DaemonSet: revisions of a
//! pod template, their hashes, and history limits.
