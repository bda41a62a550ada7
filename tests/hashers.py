"""A password hasher for the test process only."""

from django.contrib.auth.hashers import PBKDF2PasswordHasher


class FewRoundsPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    """PBKDF2 at one round. Production's 1,000,000 rounds cost about 0.3 s per user on a
    slow CI core, and the suite makes thousands of users. The algorithm name and the hash
    format are production's, with the round count inside the hash, so the live stack's
    servers (on the default hashers) still verify these passwords."""

    iterations = 1
