"""Synapse logins against mxisd's identity stores (LDAP / Active Directory, the static
store, a REST backend): a password-auth module for Synapse's `modules:` list.

Synapse asks it to check `m.login.password` logins (by user name, or by e-mail address or
phone number through `check_3pid_auth`). It asks mxisd's
`/_matrix-internal/identity/v1/check_credentials` through Synapse's own asynchronous HTTP
client under a deadline, so a slow or stopped mxisd fails that login quickly (Synapse
answers 403) and never holds up anything else. (Synapse's client itself closes a
connection that got no answer after its own 60 s.) On a user's first successful login it
creates the Synapse account with the directory's display name, and adds the directory's
e-mail addresses and phone numbers to it.

    modules:
      - module: mxisd_password_auth.MxisdPasswordAuth
        config:
          endpoint: "http://127.0.0.1:8090"   # mxisd, as internal.allowedCidr allows
          timeout: 5                          # seconds for mxisd's answer
          policy:
            registration:
              username:
                enforceLowercase: true        # kept for old configs: Synapse refuses @Alice
              profile:
                name: true                    # display name when the account is created
            login:
              profile:
                name: false                   # ... and again at every login
            all:
              threepid:
                update: true                  # add the directory's 3PIDs at each login

The policy keys are those of the older REST auth module (`kamax-io/matrix-synapse-rest-auth`),
so its configuration carries over; its `policy.all.threepid.replace` is not supported.
"""

import hashlib
import logging
import os
import time
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple

from twisted.internet import defer, reactor

from synapse.module_api import (
    ModuleApi,
    UserID,
    make_deferred_yieldable,
    run_in_background,
)

logger = logging.getLogger(__name__)

CHECK_PATH = "/_matrix-internal/identity/v1/check_credentials"
# Seconds during which the login attempt that found mxisd hung is not asked again (the rest
# of the same login: Synapse asks again by user id after a refused login by address).
HUNG_FOR = 5.0

LoginResult = Optional[Tuple[str, Optional[Callable[[Any], Awaitable[None]]]]]


class Config:
    def __init__(self, raw: Dict[str, Any]):
        endpoint = raw.get("endpoint")
        if not isinstance(endpoint, str) or not endpoint.startswith(("http://", "https://")):
            raise ValueError("mxisd_password_auth: endpoint must be mxisd's http(s) URL")
        self.url = endpoint.rstrip("/") + CHECK_PATH
        timeout = raw.get("timeout", 5)
        if not isinstance(timeout, (int, float)) or not 0 < timeout <= 60:
            raise ValueError("mxisd_password_auth: timeout must be 1 to 60 seconds")
        self.timeout = float(timeout)
        policy = raw.get("policy") or {}
        self.enforce_lowercase = _flag(policy, "registration.username.enforceLowercase", True)
        self.name_on_register = _flag(policy, "registration.profile.name", True)
        self.name_on_login = _flag(policy, "login.profile.name", False)
        self.add_threepids = _flag(policy, "all.threepid.update", True)
        if _flag(policy, "all.threepid.replace", False):
            logger.warning(
                "mxisd_password_auth: policy.all.threepid.replace is not supported: "
                "3PIDs are added, never removed"
            )


def _flag(policy: Dict[str, Any], path: str, default: bool) -> bool:
    value: Any = policy
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            return default
        value = value[key]
    if not isinstance(value, bool):
        raise ValueError(f"mxisd_password_auth: policy.{path} must be true or false")
    return value


class MxisdPasswordAuth:
    def __init__(self, config: Config, api: ModuleApi):
        self._config = config
        self._api = api
        # Login attempts (by a salted hash of their password: the same in both of Synapse's
        # asks) that found mxisd hung, and until when: Synapse asks again by user id after
        # a refused login by address, which would wait a second `timeout`. Other users'
        # logins are not affected.
        self._hung: Dict[bytes, float] = {}
        self._salt = os.urandom(16)
        api.register_password_auth_provider_callbacks(
            auth_checkers={("m.login.password", ("password",)): self.check_password},
            check_3pid_auth=self.check_3pid_auth,
        )
        logger.info(
            "mxisd_password_auth: passwords are checked by %s (timeout %.0f s)",
            config.url,
            config.timeout,
        )

    @staticmethod
    def parse_config(config: Dict[str, Any]) -> Config:
        return Config(config or {})

    async def check_password(
        self, username: str, login_type: str, login_dict: Dict[str, Any]
    ) -> LoginResult:
        password = login_dict.get("password")
        if not isinstance(password, str) or not password:
            return None
        user_id = self._api.get_qualified_user_id(username)
        if not self._api.is_mine(user_id):
            return None
        auth = await self._ask({"id": user_id, "password": password}, user_id)
        return await self._logged_in(auth, user_id)

    async def check_3pid_auth(self, medium: str, address: str, password: str) -> LoginResult:
        if not isinstance(password, str) or not password:
            return None
        who = f"{medium} {address}"
        auth = await self._ask(
            {"medium": medium, "address": address, "password": password}, who
        )
        return await self._logged_in(auth, who)

    async def _ask(self, user: Dict[str, str], who: str) -> Optional[Dict[str, Any]]:
        """mxisd's `auth` object when it accepts the password; None otherwise (refused,
        unreachable, too slow, or an answer we cannot read: each logged)."""
        started = time.monotonic()
        attempt = hashlib.sha256(self._salt + user["password"].encode()).digest()
        if self._hung.get(attempt, 0.0) > started:
            logger.warning(
                "mxisd_password_auth: mxisd gave no answer a moment ago; login of %s refused",
                who,
            )
            return None
        request = run_in_background(
            self._api.http_client.post_json_get_json, self._config.url, {"user": user}
        )
        # Cancelling on timeout also closes the connection to mxisd. Whatever the
        # cancelled request raised (Synapse's client may turn it into another error), the
        # outcome is a timeout.
        request.addTimeout(self._config.timeout, reactor, onTimeoutCancel=_timed_out)
        try:
            answer = await make_deferred_yieldable(request)
        except defer.TimeoutError:
            self._remember_hung(attempt)
            logger.warning(
                "mxisd_password_auth: mxisd gave no answer within %.0f s for %s; login refused",
                self._config.timeout,
                who,
            )
            return None
        except Exception as e:  # noqa: BLE001 - any failure is a refused login, logged
            logger.warning(
                "mxisd_password_auth: asking mxisd for %s failed after %.1f s (%s: %s); login refused",
                who,
                time.monotonic() - started,
                type(e).__name__,
                e,
            )
            return None
        auth = answer.get("auth") if isinstance(answer, dict) else None
        if not isinstance(auth, dict):
            logger.warning("mxisd_password_auth: unreadable answer from mxisd for %s", who)
            return None
        if auth.get("success") is not True:
            logger.info("mxisd_password_auth: wrong password or unknown user: %s", who)
            return None
        return auth

    def _remember_hung(self, attempt: bytes) -> None:
        now = time.monotonic()
        self._hung = {a: until for a, until in self._hung.items() if until > now}
        if len(self._hung) < 10_000:
            self._hung[attempt] = now + HUNG_FOR

    async def _logged_in(self, auth: Optional[Dict[str, Any]], who: str) -> LoginResult:
        """The Synapse user of an accepted login: created on first login, its profile and
        3PIDs brought in as the policy says."""
        if auth is None:
            return None
        mxid = auth.get("mxid")
        if not isinstance(mxid, str):
            mxid = (auth.get("id") or {}).get("value")
        if not isinstance(mxid, str) or not self._api.is_mine(mxid):
            logger.warning("mxisd_password_auth: %s is not a user of this homeserver", mxid)
            return None
        profile = auth.get("profile") or {}
        if not isinstance(profile, dict):
            profile = {}
        name = profile.get("display_name")
        name = name if isinstance(name, str) and name else None
        user_id = await self._api.check_user_exists(mxid)
        created = user_id is None
        if created:
            user_id = await self._register(mxid, name)
            if user_id is None:
                return None
        # The password was right: a profile that cannot be brought in is logged, and the
        # login goes on.
        try:
            if not created and self._config.name_on_login and name is not None:
                await self._update_name(user_id, name)
            if self._config.add_threepids:
                await self._add_threepids(user_id, profile.get("three_pids") or [])
        except Exception as e:  # noqa: BLE001
            logger.warning(
                "mxisd_password_auth: the profile of %s was not updated: %s: %s",
                user_id,
                type(e).__name__,
                e,
            )
        logger.info("mxisd_password_auth: %s logged in (%s)", user_id, who)
        return user_id, None

    async def _update_name(self, user_id: str, name: str) -> None:
        localpart = UserID.from_string(user_id).localpart
        current = await self._api.get_profile_for_user(localpart)
        if current.display_name != name:
            await self._api.set_displayname(UserID.from_string(user_id), name)

    async def _register(self, mxid: str, name: Optional[str]) -> Optional[str]:
        localpart = UserID.from_string(mxid).localpart
        if self._config.enforce_lowercase and localpart != localpart.lower():
            logger.warning(
                "mxisd_password_auth: %s is not created: its name has capitals "
                "(policy.registration.username.enforceLowercase)",
                mxid,
            )
            return None
        display_name = name if self._config.name_on_register else None
        try:
            user_id = await self._api.register_user(localpart, displayname=display_name)
        except Exception as e:  # noqa: BLE001 - e.g. created meanwhile by a parallel login
            existing = await self._api.check_user_exists(mxid)
            if existing is None:
                logger.warning("mxisd_password_auth: %s could not be created: %s", mxid, e)
            return existing
        logger.info("mxisd_password_auth: created %s from the directory", user_id)
        return user_id

    async def _add_threepids(self, user_id: str, threepids: List[Any]) -> None:
        """Adds the directory's 3PIDs the account lacks; one another account holds is left
        to that account (logged)."""
        have = {
            (t["medium"], t["address"]) for t in await self._api.get_threepids_for_user(user_id)
        }
        now = int(time.time() * 1000)
        for t in threepids:
            if not isinstance(t, dict):
                continue
            medium, address = t.get("medium"), t.get("address")
            # mxisd gives addresses normalised (e-mail case-folded, numbers in E.164 digits).
            if medium not in ("email", "msisdn") or not isinstance(address, str):
                continue
            if (medium, address) in have:
                continue
            added = await self._api.run_db_interaction(
                "mxisd_password_auth_add_threepid",
                _add_threepid,
                user_id,
                medium,
                address,
                now,
            )
            if added:
                have.add((medium, address))
                logger.info("mxisd_password_auth: added a %s to %s", medium, user_id)
            else:
                logger.warning(
                    "mxisd_password_auth: a %s of %s is another account's; not added",
                    medium,
                    user_id,
                )


def _timed_out(result: Any, timeout: float) -> None:
    raise defer.TimeoutError(timeout, "mxisd")


def _add_threepid(txn: Any, user_id: str, medium: str, address: str, now: int) -> bool:
    """Adds (medium, address) to `user_id` in Synapse's `user_threepids`, unless an account
    has it (its unique index on (medium, address): two logins at once add it once)."""
    txn.execute(
        "INSERT INTO user_threepids (user_id, medium, address, validated_at, added_at)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (medium, address) DO NOTHING",
        (user_id, medium, address, now, now),
    )
    if txn.rowcount == 1:
        return True
    # Already there: this account's (a parallel login added it), or another's.
    txn.execute(
        "SELECT user_id FROM user_threepids WHERE medium = ? AND address = ?",
        (medium, address),
    )
    row = txn.fetchone()
    return row is not None and row[0] == user_id
