//! `user` and `group`: whom the children run as.

/// Why a `group` without a `user` is refused, in the attribute's compile error and the
/// builder's run-time error alike: the group is only ever applied with the user.
pub const GROUP_WITHOUT_USER: &str =
    "`group` needs `user`: the group is the one the child's user runs with";
