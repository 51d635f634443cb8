"""Sign-in with the organisation's identity provider: LDAP and OpenID Connect.

Accounts come from the directory or the provider, linked by a stable subject
(never by a changeable email), and their groups are mirrored into Django groups,
which the policies see as `Role` parents and `principal.groups`.
"""
