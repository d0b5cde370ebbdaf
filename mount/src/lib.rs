//! Mount lifecycle: mounting a drive at a path, daemon mode, unmounting, signals and
//! stale-mount recovery. Built in the mount issue.
