"""A throwaway OpenLDAP server (slapd) on a free port, with its own database and an LDIF of people and groups."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SUFFIX = "dc=example,dc=org"
ADMIN_DN = f"cn=admin,{SUFFIX}"
ADMIN_PASSWORD = "directory-admin-secret"
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
REQUIRED_GROUP = f"cn=webconnect-users,{GROUPS}"

# name: (display name, password, groups)
USERS = {
    "ada": ("Ada Lovelace", "ada-directory-pw", ["webconnect-users", "engineering"]),
    "grace": ("Grace Hopper", "grace-directory-pw", ["webconnect-users"]),
    "mallory": ("Mallory Outsider", "mallory-directory-pw", []),
}


def ldif() -> str:
    parts = [
        f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n",
        f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n",
        f"dn: {GROUPS}\nobjectClass: organizationalUnit\nou: groups\n",
    ]
    for uid, (cn, password, _groups) in USERS.items():
        parts.append(
            f"dn: uid={uid},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {cn}\nsn: {cn.split()[-1]}\n"
            f"mail: {uid}@example.org\nuserPassword: {password}\n"
        )
    for group in ("webconnect-users", "engineering"):
        # groupOfNames needs a member: the admin entry holds the place (it is no person and never signs in).
        members = f"member: {ADMIN_DN}\n" + "".join(
            f"member: uid={uid},{PEOPLE}\n" for uid, (*_, groups) in USERS.items() if group in groups
        )
        parts.append(f"dn: cn={group},{GROUPS}\nobjectClass: groupOfNames\ncn: {group}\n{members}")
    return "\n".join(parts)


@dataclass
class Directory:
    process: subprocess.Popen[bytes]
    port: int
    root: Path

    @property
    def uri(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    def settings_env(self) -> dict[str, str]:
        """The environment a webconnect server needs to sign users in against this directory."""
        return {
            "AUTH_LDAP_SERVER_URI": self.uri,
            "AUTH_LDAP_BIND_DN": ADMIN_DN,
            "AUTH_LDAP_BIND_PASSWORD": ADMIN_PASSWORD,
            "AUTH_LDAP_USER_SEARCH_BASE": PEOPLE,
            "AUTH_LDAP_USER_FILTER": "(uid=%(user)s)",
            "AUTH_LDAP_GROUP_SEARCH_BASE": GROUPS,
            "AUTH_LDAP_REQUIRE_GROUP": REQUIRED_GROUP,
            "AUTH_LDAP_START_TLS": "false",  # a plain-LDAP test server
        }

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        shutil.rmtree(self.root, ignore_errors=True)


def start_directory(port: int, timeout: float = 20) -> Directory:
    slapd = shutil.which("slapd") or "/usr/sbin/slapd"
    if not Path(slapd).exists():
        raise RuntimeError("slapd is not installed: apt-get install slapd ldap-utils (.ci/run does)")
    root = Path(tempfile.mkdtemp(prefix="webconnect-slapd-"))
    (root / "db").mkdir()
    schema = Path("/etc/ldap/schema")
    conf = root / "slapd.conf"
    conf.write_text(
        "".join(f"include {schema / name}.schema\n" for name in ("core", "cosine", "inetorgperson", "nis"))
        + f"modulepath /usr/lib/ldap\nmoduleload back_mdb\npidfile {root / 'slapd.pid'}\n"
        + f'database mdb\nsuffix "{SUFFIX}"\nrootdn "{ADMIN_DN}"\nrootpw {ADMIN_PASSWORD}\n'
        + f"directory {root / 'db'}\nmaxsize 10485760\n"
    )
    (root / "data.ldif").write_text(ldif())
    subprocess.run(
        [shutil.which("slapadd") or "/usr/sbin/slapadd", "-f", str(conf), "-l", str(root / "data.ldif")],
        check=True,
        capture_output=True,
    )
    log = (root / "slapd.log").open("wb")
    process = subprocess.Popen(
        [slapd, "-f", str(conf), "-h", f"ldap://127.0.0.1:{port}/", "-d", "0"], stdout=log, stderr=subprocess.STDOUT
    )
    directory = Directory(process, port, root)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"slapd exited early:\n{(root / 'slapd.log').read_text()[-2000:]}")
        answer = subprocess.run(
            ["ldapwhoami", "-x", "-H", directory.uri, "-D", ADMIN_DN, "-w", ADMIN_PASSWORD],
            capture_output=True,
        )
        if answer.returncode == 0:
            return directory
        time.sleep(0.2)
    directory.stop()
    raise RuntimeError(f"slapd did not answer within {timeout}s")
