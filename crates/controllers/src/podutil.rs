//! Pod helpers shared by the controllers: readiness, activity, owner references,
//! and pods from templates (upstream's controller_utils).
