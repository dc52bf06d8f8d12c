"""``raftcron jobs import crontab``: a table of crontab lines with the TOML each one
becomes (every rule of issue 18: schedules and aliases, environment lines, SHELL, CRON_TZ,
TZ, MAILTO, ``%`` and ``\\%``, users, the system format, each lock wrapper, names, Vixie
cron's day and DST rules), the report, and that what is written is exactly what the
cluster file and ``jobs apply`` accept."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from raftcron.config import job_spec_from_mapping, parse_config
from raftcron.importers.cli import host_zone
from raftcron.importers.common import InputError, to_json, to_toml
from raftcron.importers.crontab import (
    MAX_BYTES,
    Options,
    decode,
    import_crontab,
    split_percent,
)

SH = '"/bin/sh", "-c"'


def job(name: str, schedule: str, command: str, *extra: str, tz: str = "UTC") -> str:
    lines = [
        "[[jobs]]",
        f'name = "{name}"',
        f'schedule = "{schedule}"',
        f'timezone = "{tz}"',
        f"command = [{SH}, {command}]",
        *extra,
    ]
    return "\n".join(lines) + "\n"


# (id, crontab, options, expected TOML without comments, [(level, where, text in message)])
CASES: list[tuple[str, str, dict[str, Any], str, list[tuple[str, str, str]]]] = [
    ("comments-blank-tabs", "# header\n\n  \t \n   # indented\n", {}, "", []),
    (
        "five-fields",
        "0 3 * * * /usr/bin/backup",
        {},
        job("backup", "0 3 * * *", '"/usr/bin/backup"'),
        [],
    ),
    (
        "tabs-between-fields",
        "0\t3\t*\t*\t*\t/usr/bin/backup\t--full",
        {},
        job("backup", "0 3 * * *", '"/usr/bin/backup\\t--full"'),
        [],
    ),
    ("leading-space", "   15 4 * * * /opt/x.sh", {}, job("x", "15 4 * * *", '"/opt/x.sh"'), []),
    (
        "crlf",
        "0 3 * * * /usr/bin/backup\r\n",
        {},
        job("backup", "0 3 * * *", '"/usr/bin/backup"'),
        [],
    ),
    ("hourly", "@hourly /usr/bin/h", {}, job("h", "@hourly", '"/usr/bin/h"'), []),
    ("daily", "@daily /usr/bin/d", {}, job("d", "@daily", '"/usr/bin/d"'), []),
    ("midnight", "@midnight /usr/bin/m", {}, job("m", "@midnight", '"/usr/bin/m"'), []),
    ("weekly", "@weekly\t/usr/bin/w", {}, job("w", "@weekly", '"/usr/bin/w"'), []),
    ("monthly", "@monthly /usr/bin/mo", {}, job("mo", "@monthly", '"/usr/bin/mo"'), []),
    ("yearly", "@yearly /usr/bin/y", {}, job("y", "@yearly", '"/usr/bin/y"'), []),
    ("annually", "@annually /usr/bin/a", {}, job("a", "@annually", '"/usr/bin/a"'), []),
    (
        "reboot",
        "@reboot /usr/bin/start",
        {},
        "",
        [("notice", "line 1", "@reboot is not a schedule")],
    ),
    (
        "unknown-alias",
        "@often /usr/bin/x",
        {},
        "",
        [("error", "line 1", "'@often' is not a cron schedule")],
    ),
    (
        "names-ranges",
        "30 8 * JAN-MAR MON-FRI /opt/report.py --q1",
        {},
        job("report", "30 8 * JAN-MAR MON-FRI", '"/opt/report.py --q1"'),
        [],
    ),
    (
        "steps-lists",
        "*/15 9-17 1,15 * * php /srv/app/cron.php",
        {},
        job("cron", "*/15 9-17 1,15 * *", '"php /srv/app/cron.php"'),
        [],
    ),
    ("dow-7", "0 0 * * 7 /bin/sunday", {}, job("sunday", "0 0 * * 7", '"/bin/sunday"'), []),
    (
        "env",
        "FOO=bar\n0 1 * * * printenv FOO",
        {},
        job("printenv", "0 1 * * *", '"printenv FOO"', 'env = { FOO = "bar" }'),
        [],
    ),
    (
        "env-double-quotes",
        'GREETING="hello world"\n0 1 * * * /bin/greet',
        {},
        job("greet", "0 1 * * *", '"/bin/greet"', 'env = { GREETING = "hello world" }'),
        [],
    ),
    (
        "env-single-quotes-spaces",
        "  X = 'a b'  \n0 1 * * * /bin/x",
        {},
        job("x", "0 1 * * *", '"/bin/x"', 'env = { X = "a b" }'),
        [],
    ),
    (
        "env-empty",
        "EMPTY=\n0 1 * * * /bin/x",
        {},
        job("x", "0 1 * * *", '"/bin/x"', 'env = { EMPTY = "" }'),
        [],
    ),
    (
        "env-hash-and-dollar-kept",
        "URL=http://h/#frag\nP=$HOME/bin\n0 1 * * * /bin/x",
        {},
        job("x", "0 1 * * *", '"/bin/x"', 'env = { URL = "http://h/#frag", P = "$HOME/bin" }'),
        [],
    ),
    (
        "env-only-for-later-lines-last-wins",
        "0 1 * * * /bin/a\nX=1\nX=2\n0 2 * * * /bin/b",
        {},
        job("a", "0 1 * * *", '"/bin/a"')
        + "\n"
        + job("b", "0 2 * * *", '"/bin/b"', 'env = { X = "2" }'),
        [],
    ),
    (
        "shell",
        "SHELL=/bin/bash\n0 1 * * * /bin/x",
        {},
        job("x", "0 1 * * *", '"/bin/x"').replace('"/bin/sh"', '"/bin/bash"'),
        [],
    ),
    (
        "cron-tz-fixed-time",
        "CRON_TZ=America/New_York\n30 2 * * * /bin/x",
        {},
        job("x", "30 2 * * *", '"/bin/x"', tz="America/New_York"),
        [],
    ),
    (
        "cron-tz-wildcard-runs-by-real-time",
        "CRON_TZ=Europe/Berlin\n30 * * * * /bin/x",
        {},
        job(
            "x",
            "30 * * * *",
            '"/bin/x"',
            'dst_gap = "skip"',
            'dst_repeat = "twice"',
            tz="Europe/Berlin",
        ),
        [],
    ),
    (
        "tz-goes-to-env-zone-from-option",
        "TZ=Asia/Tokyo\n0 9 * * * /bin/x",
        {"tz": "Europe/Paris"},
        job("x", "0 9 * * *", '"/bin/x"', 'env = { TZ = "Asia/Tokyo" }', tz="Europe/Paris"),
        [],
    ),
    (
        "invalid-cron-tz",
        "CRON_TZ=Mars/Olympus\n0 9 * * * /bin/x",
        {},
        "",
        [("error", "line 1", "CRON_TZ='Mars/Olympus'"), ("error", "line 2", "CRON_TZ on line 1")],
    ),
    (
        "mailto",
        "MAILTO=ops@example.com\n0 1 * * * /bin/x",
        {},
        job("x", "0 1 * * *", '"/bin/x"'),
        [("notice", "line 1", "[notify] webhooks")],
    ),
    ("mailto-empty", 'MAILTO=""\n0 1 * * * /bin/x', {}, job("x", "0 1 * * *", '"/bin/x"'), []),
    (
        "percent-stdin",
        "0 9 * * * mail -s hi ops%line 1%line 2",
        {},
        job("mail", "0 9 * * *", '"mail -s hi ops"', 'stdin = "line 1\\nline 2"'),
        [],
    ),
    (
        "escaped-percent-literal",
        r"0 9 * * * date +\%Y-\%m-\%d > /tmp/d",
        {},
        job("date", "0 9 * * *", '"date +%Y-%m-%d > /tmp/d"'),
        [],
    ),
    (
        "escaped-percent-in-stdin",
        r"0 9 * * * cat%a\%b%c\x",
        {},
        job("cat", "0 9 * * *", '"cat"', 'stdin = "a%b\\nc\\\\x"'),
        [],
    ),
    ("trailing-percent", "0 9 * * * cat%", {}, job("cat", "0 9 * * *", '"cat"'), []),
    (
        "percent-only",
        "0 9 * * * %input",
        {},
        "",
        [("error", "line 1", "no command before the first %")],
    ),
    (
        "user-option",
        "0 1 * * * /bin/x",
        {"user": "backup"},
        job("x", "0 1 * * *", '"/bin/x"', 'user = "backup"'),
        [],
    ),
    (
        "system-format",
        "0 5 * * * root /usr/sbin/logrotate /etc/logrotate.conf",
        {"system": True},
        job("logrotate", "0 5 * * *", '"/usr/sbin/logrotate /etc/logrotate.conf"', 'user = "root"'),
        [],
    ),
    (
        "system-alias-tab",
        "@daily\twww-data\tphp /srv/x.php",
        {"system": True},
        job("x", "@daily", '"php /srv/x.php"', 'user = "www-data"'),
        [],
    ),
    (
        "system-no-command",
        "0 5 * * * root",
        {"system": True},
        "",
        [("error", "line 1", "no command after the user field")],
    ),
    (
        "system-seven-time-fields",
        "0 0 5 * * * root /bin/x",
        {"system": True},
        "",
        [("error", "line 1", "6 time fields")],
    ),
    (
        "seven-fields-user-format",
        "0 0 5 * * * /bin/x",
        {},
        "",
        [("error", "line 1", "7 fields: 6 time fields (0 0 5 * * *)")],
    ),
    (
        "user-field-in-user-format",
        "0 5 * * * root /bin/x",
        {},
        "",
        [("error", "line 1", "import it with --system")],
    ),
    (
        "invalid-expression",
        "61 * * * * /bin/x",
        {},
        "",
        [("error", "line 1", 'schedule: "61 * * * *" is not a cron expression')],
    ),
    ("too-few-fields", "0 3 * *", {}, "", [("error", "line 1", "4 fields and no command")]),
    (
        "flock-argv",
        "*/5 * * * * flock -n /tmp/a.lock /usr/local/bin/sync.sh --fast > /dev/null 2>&1",
        {},
        job(
            "sync",
            "*/5 * * * *",
            '"/usr/local/bin/sync.sh --fast > /dev/null 2>&1"',
            'overlap = "skip"',
        ),
        [],
    ),
    (
        "flock-dash-c",
        "0 2 * * * /usr/bin/flock -xn -E 0 /var/lock/r -c 'cd /srv && ./run.sh' >> /var/log/r 2>&1",
        {},
        job("run", "0 2 * * *", '"( cd /srv && ./run.sh ) >> /var/log/r 2>&1"', 'overlap = "skip"'),
        [],
    ),
    (
        "flock-blocking-kept",
        "0 2 * * * flock /tmp/l /bin/x",
        {},
        job("flock", "0 2 * * *", '"flock /tmp/l /bin/x"'),
        [],
    ),
    (
        "etcdctl-lock",
        "15 2 * * * ETCDCTL_API=3 etcdctl --endpoints=http://e:2379 lock --ttl 30 nightly "
        "/usr/bin/nightly --all",
        {},
        job("nightly", "15 2 * * *", '"/usr/bin/nightly --all"', 'overlap = "skip"'),
        [],
    ),
    (
        "redis-set-nx",
        "0 1 * * * redis-cli -h r SET lock:x 1 NX EX 300 | grep -q OK && "
        "php /srv/app/artisan schedule:run; redis-cli DEL lock:x",
        {},
        job("artisan", "0 1 * * *", '"php /srv/app/artisan schedule:run"', 'overlap = "skip"'),
        [],
    ),
    (
        "raftcron-lock",
        "0 1 * * * raftcron lock reports --ttl 60s -- /usr/bin/report --daily",
        {},
        job("report", "0 1 * * *", '"/usr/bin/report --daily"', 'overlap = "skip"'),
        [],
    ),
    (
        "per-host",
        "0 1 * * * /bin/a\n0 2 * * * flock -n /tmp/b /bin/b",
        {"per_host": True},
        job("a", "0 1 * * *", '"/bin/a"', 'count = "all"')
        + "\n"
        + job("b", "0 2 * * *", '"/bin/b"', 'overlap = "skip"'),
        [],
    ),
    (
        "names-args-hash-duplicates",
        "0 3 * * * /opt/backup.sh daily\n0 4 * * 0 /opt/backup.sh weekly\n"
        "0 5 * * * /usr/bin/sync\n0 6 * * * /usr/bin/sync\n0 6 * * * /usr/bin/sync",
        {},
        job("backup-daily", "0 3 * * *", '"/opt/backup.sh daily"')
        + "\n"
        + job("backup-weekly", "0 4 * * 0", '"/opt/backup.sh weekly"')
        + "\n"
        + job("sync-dc0d76", "0 5 * * *", '"/usr/bin/sync"')
        + "\n"
        + job("sync-026abc", "0 6 * * *", '"/usr/bin/sync"')
        + "\n"
        + job("sync-026abc-2", "0 6 * * *", '"/usr/bin/sync"'),
        [],
    ),
    (
        "name-past-cd-and-nice",
        "0 1 * * * cd /srv/app && nice -n 10 ./bin/console cache:clear",
        {},
        job("console", "0 1 * * *", '"cd /srv/app && nice -n 10 ./bin/console cache:clear"'),
        [],
    ),
    ("prefix", "0 1 * * * /bin/x", {"prefix": "web1"}, job("web1-x", "0 1 * * *", '"/bin/x"'), []),
    (
        "vixie-day-rule",
        "0 0 */2 * 1-5 /bin/x",
        {},
        job("x", "0 0 */2 * 1-5", '"/bin/x"'),
        [("notice", "line 1", "cron runs it on days matching BOTH")],
    ),
    (
        "both-days-restricted-same-rule",
        "0 0 1 * MON /bin/x",
        {},
        job("x", "0 0 1 * MON", '"/bin/x"'),
        [],
    ),
    (
        "random-delay",
        "RANDOM_DELAY=30\n0 1 * * * /bin/x",
        {},
        job("x", "0 1 * * *", '"/bin/x"', 'jitter = "30m"'),
        [],
    ),
    (
        "reserved-env",
        "RAFTCRON_JOB=x\n0 1 * * * /bin/x",
        {},
        job("x", "0 1 * * *", '"/bin/x"'),
        [("error", "line 1", "RAFTCRON_JOB: reserved")],
    ),
]


def _lines(text: str) -> list[str]:
    """The TOML's lines without comments and blank lines."""
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


@pytest.mark.parametrize(
    ("crontab", "opts", "toml", "report"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_each_line_becomes_the_expected_toml(
    crontab: str, opts: dict[str, Any], toml: str, report: list[tuple[str, str, str]]
) -> None:
    options = Options(**{"tz": "UTC", **opts})
    result = import_crontab(crontab, "crontab", options, is_account=lambda w: w == "root")
    out = to_toml(result)
    assert _lines(out) == _lines(toml), out
    for level, where, text in report:
        assert any(
            e.level == level and e.where == where and text in e.text for e in result.report
        ), result.report_lines()
    expected_levels = {level for level, _, _ in report}
    assert {e.level for e in result.report} - {"info"} == expected_levels, result.report_lines()
    assert result.exit_code == (2 if "error" in expected_levels else 3 if expected_levels else 0)
    # what is written is what the cluster file accepts, key for key
    for written, job_ in zip(tomllib.loads(out).get("jobs", []), result.jobs, strict=True):
        assert written == job_.table
        job_spec_from_mapping(written, "jobs[0]")


def test_there_are_at_least_40_cases() -> None:
    assert len(CASES) >= 40


def test_the_output_goes_into_a_cluster_file_as_it_is(tmp_path: Path) -> None:
    crontab = "\n".join(c[1] for c in CASES if not c[4] and not c[2].get("system"))
    result = import_crontab(crontab, "crontab", Options(tz="Europe/Berlin", prefix="h1"))
    assert len(result.jobs) >= 30
    head = (
        '[cluster]\nsecret = "Xq3vJ8pL0wZr7TkN2bYc5HdF"\n'
        '[cluster.nodes.a]\nraft = "127.0.0.1:17301"\napi = "127.0.0.1:18301"\n'
    )
    cfg = parse_config(head + to_toml(result), tmp_path / "cluster.toml")
    assert [s.name for s in cfg.jobs] == [j.table["name"] for j in result.jobs]
    assert json.loads(to_json(result))["jobs"] == [j.table for j in result.jobs]


def test_comments_say_where_each_job_came_from_and_what_changed() -> None:
    text = "CRON_TZ=Europe/Berlin\n*/5 * * * * flock -n /tmp/a /bin/x%in"
    out = to_toml(import_crontab(text, "crontab", Options(tz="UTC")))
    assert out.splitlines()[:4] == [
        "# line 2: */5 * * * * flock -n /tmp/a /bin/x%in",
        '# lock wrapper (flock -n) removed: overlap = "skip"',
        "# text after the first % becomes stdin",
        "# minute or hour starts with *: runs by real time across DST, as cron",
    ]


@pytest.mark.parametrize(
    ("line", "command", "stdin"),
    [
        ("a", "a", None),
        ("a%b", "a", "b"),
        ("a%b%c%", "a", "b\nc\n"),
        (r"a\%b", "a%b", None),
        (r"a\\%b", "a\\\\", "b"),
        (r"a\x%b\x\%c\\", "a\\x", "b\\x%c\\\\"),
        ("%", "", ""),
    ],
)
def test_percent_follows_vixie_cron(line: str, command: str, stdin: str | None) -> None:
    assert split_percent(line) == (command, stdin)


def test_time_zone_rules_and_the_report() -> None:
    text = "0 1 * * * /bin/a\nCRON_TZ=Asia/Tokyo\n0 2 * * * /bin/b"
    result = import_crontab(text, "crontab", Options(host_zone="America/Chicago"))
    assert [j.table["timezone"] for j in result.jobs] == ["America/Chicago", "Asia/Tokyo"]
    assert any("America/Chicago, this host's zone" in e.text for e in result.report)
    unknown = import_crontab("0 1 * * * /bin/a", "crontab", Options())
    assert unknown.jobs[0].table["timezone"] == "UTC" and unknown.exit_code == 3
    given = import_crontab(
        "0 1 * * * /bin/a", "crontab", Options(tz="Europe/Rome", host_zone="UTC")
    )
    assert given.jobs[0].table["timezone"] == "Europe/Rome"


def test_unwrapped_lines_are_reported_once() -> None:
    text = "0 1 * * * /bin/a\n0 2 * * * flock -n /tmp/b /bin/b\n0 3 * * * /bin/c"
    result = import_crontab(text, "crontab", Options(tz="UTC"))
    (entry,) = [e for e in result.report if "not wrapped in a lock" in e.text]
    assert entry.where == "lines 1, 3" and "imported to run ONCE" in entry.text


def test_host_zone(tmp_path: Path) -> None:
    link = tmp_path / "localtime"
    link.symlink_to("/usr/share/zoneinfo/Europe/Vienna")
    missing = str(tmp_path / "none")
    assert host_zone({"TZ": ":America/Denver"}, missing, missing) == "America/Denver"
    assert host_zone({}, str(link), missing) == "Europe/Vienna"
    (tmp_path / "timezone").write_text("Asia/Kolkata\n")
    assert host_zone({}, missing, str(tmp_path / "timezone")) == "Asia/Kolkata"
    assert host_zone({"TZ": "Nowhere/Land"}, missing, missing) is None


# --------------------------------------------------------------------------- bad input


def test_bad_input_names_the_line() -> None:
    with pytest.raises(InputError, match=r"^f: line 3: a NUL byte: this is a binary file"):
        decode(b"# a\n# b\n\x7fELF\x00\x01", "f")
    with pytest.raises(InputError, match=r"^f: line 2: byte 6 is not UTF-8"):
        decode(b"# a\n# \xff\xfe", "f")
    big = b"0 1 * * * /bin/x\n" * (10 * (1 << 20) // 17)
    with pytest.raises(InputError, match=r"^f: line 61681: the file is larger than 1024 KiB"):
        decode(big, "f")
    assert len(big) > 10_000_000 and MAX_BYTES == 1 << 20


def raftcron(
    *args: str, stdin: bytes = b"", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "raftcron", "jobs", "import", *args],
        input=stdin,
        capture_output=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_cli_exit_codes_and_nothing_partial(tmp_path: Path) -> None:
    good = tmp_path / "good"
    good.write_text("0 1 * * * /bin/a\n")
    out = raftcron("crontab", str(good), "--tz", "UTC", "--user", "me")
    assert out.returncode == 0, out.stderr
    assert tomllib.loads(out.stdout.decode())["jobs"][0]["user"] == "me"

    notices = raftcron(
        "crontab", "-", "--tz", "UTC", stdin=b"MAILTO=a@b\n@reboot /bin/x\n0 1 * * * /bin/a\n"
    )
    assert notices.returncode == 3 and b"[[jobs]]" in notices.stdout

    bad = b"0 1 * * * /bin/a\n0 0 5 * * * /bin/b\n61 * * * * /bin/c\n"
    errors = raftcron("crontab", "-", "--tz", "UTC", stdin=bad)
    assert errors.returncode == 2 and errors.stdout == b""
    err = errors.stderr.decode()
    assert "error: stdin: line 2: 7 fields" in err and "error: stdin: line 3: schedule:" in err
    assert (
        "nothing written (fix the errors above, or give --partial to write the 1 valid jobs)" in err
    )
    partial = raftcron("crontab", "-", "--tz", "UTC", "--partial", "-o", "json", stdin=bad)
    assert partial.returncode == 2
    assert [j["name"] for j in json.loads(partial.stdout)["jobs"]] == ["a"]

    binary = tmp_path / "bin"
    binary.write_bytes(b"\x7fELF\x02\x01\x01\x00" * 100)
    out = raftcron("crontab", str(binary), "--tz", "UTC")
    assert out.returncode == 2 and out.stdout == b""
    assert out.stderr.decode().startswith(f"error: {binary}: line 1: a NUL byte")
    huge = tmp_path / "huge"
    huge.write_bytes(b"# filler\n" * (10 * (1 << 20) // 9))
    out = raftcron("crontab", str(huge), "--tz", "UTC")
    assert out.returncode == 2 and b"is larger than 1024 KiB" in out.stderr
    out = raftcron("crontab", str(good), "--tz", "Nowhere/Land")
    assert out.returncode == 2 and out.stderr.startswith(b"error: --tz Nowhere/Land:")
    out = raftcron("crontab", "-", "--system", "--user", "x", stdin=b"")
    assert out.returncode == 2 and b"--user: a system crontab names the user" in out.stderr
