"""The admin commands at a terminal and in a pipe, as real processes against the
emulated tenant: progress is drawn on a terminal only, never in a pipe or with
--json; `status` says what needs the admin; `history` names apps and filters."""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from rotator.emulator.runner import RunningEmulator
from tests.cli.terminal import run_on_terminal
from tests.support.emulated import make_app, rotator_env, run_rotator, write_policy

# What only a redrawn status line writes: a carriage return, then text.
REDRAW = re.compile(r"\r[^\r\n]")


def quiet_env(emu: RunningEmulator, db: str, policy: Path | None, **extra: str) -> dict[str, str]:
    """The environment an admin has: step logs at their default (warnings only)."""
    env = rotator_env(emu, db, policy, **extra)
    env.pop("ROTATOR_LOG_LEVEL")
    env.pop("ROTATOR_LOG_FORMAT")
    return env


def assert_no_progress(stderr: str) -> None:
    assert not REDRAW.search(stderr), stderr
    assert "\r" not in stderr and " · " not in stderr, stderr


def test_scan_progress_on_a_terminal_only(calm_emu: RunningEmulator, tmp_path: Path) -> None:
    emu = calm_emu
    app = make_app(emu, days_left=3)
    env = quiet_env(emu, f"sqlite:///{tmp_path / 'r.db'}",
                    write_policy(tmp_path / "p.toml", [app]))
    # Slow answers, so the line is redrawn while the scan waits for Graph.
    emu.faults.update({"latency_ms": 400})
    on_tty = run_on_terminal(["scan"], env)
    emu.faults.update({"latency_ms": 0})
    assert on_tty.returncode == 0, on_tty.stderr
    frames = [f for f in on_tty.stderr.split("\r") if f.strip()]
    drawn = [f.strip() for f in frames if f.startswith("scanning: ")]
    assert drawn, on_tty.stderr
    assert all(re.fullmatch(r"scanning: [\d,]+ apps, [\d,]+ credentials read · (-|[\d,]+) "
                            r"apps/s · \d+\.\d s", f) for f in drawn), drawn
    # The elapsed time moves while the scan waits: the line was redrawn, not printed once.
    assert len({f.rsplit("·", 1)[1] for f in drawn}) >= 2, drawn
    # It ends erased, replaced by the totals; the table itself is on stdout, untouched.
    summary = re.search(r"scan succeeded: ([\d,]+) apps, ([\d,]+) credentials read in "
                        r"\d+\.\d s \([\d,]+ apps/s\)\n", on_tty.stderr)
    assert summary is not None, on_tty.stderr
    # A second scan would read only what changed since the first: this one reads it all.
    body = json.loads(run_rotator(["scan", "--json", "--full"], env).stdout)["scan"]
    assert int(summary[1].replace(",", "")) == body["apps"]
    assert "scanning" not in on_tty.stdout and "\r" not in on_tty.stdout
    assert app.display_name in on_tty.stdout and "MANAGED" in on_tty.stdout

    piped = run_rotator(["scan"], env)
    assert piped.returncode == 0 and app.display_name in piped.stdout
    assert "scanning" not in piped.stderr
    assert_no_progress(piped.stderr)

    as_json = run_on_terminal(["scan", "--json"], env)
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["scan"]["status"] == "succeeded"
    assert "scanning" not in as_json.stderr
    assert_no_progress(as_json.stderr)


def test_rotate_draws_the_verify_wait_on_a_terminal_only(calm_emu: RunningEmulator,
                                                         tmp_path: Path) -> None:
    emu = calm_emu
    # The emulated token service takes 2 s to learn a new secret: verification waits.
    first, second = make_app(emu), make_app(emu)
    env = quiet_env(emu, f"sqlite:///{tmp_path / 'r.db'}",
                    write_policy(tmp_path / "p.toml", [first, second]))
    on_tty = run_on_terminal(["rotate", "--app", first.app_id, "--retire-now"], env)
    assert on_tty.returncode == 0, on_tty.stderr
    assert "rotation " in on_tty.stdout and ": completed" in on_tty.stdout
    waits = re.findall(r"\r  (verify: attempt (\d+): \w+ \((\d)/3 consecutive\)) · "
                       r"(\d+\.\d) s", on_tty.stderr)
    assert waits, on_tty.stderr
    # One line that keeps counting from the first attempt, redrawn in place.
    assert max(float(w[3]) for w in waits) >= 1.0, waits
    assert len({w[1] for w in waits}) >= 2, waits
    # Steps are still lines of their own, and the waiting line does not stay behind.
    assert "  verify: 3 consecutive tokens after" in on_tty.stderr
    assert "\n  verify: attempt" not in on_tty.stderr

    piped = run_rotator(["rotate", "--app", second.app_id, "--retire-now"], env)
    assert piped.returncode == 0, piped.stderr
    assert "\n  verify: attempt 1: " in "\n" + piped.stderr  # plain lines, as before
    assert_no_progress(piped.stderr)

    again = run_on_terminal(["rotate", "--app", first.app_id, "--retire-now", "--json"], env)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["state"] == "completed"
    assert_no_progress(again.stderr)


def test_report_and_alert_pass_show_progress_on_a_terminal_only(calm_emu: RunningEmulator,
                                                                 tmp_path: Path) -> None:
    emu = calm_emu
    app = make_app(emu, days_left=3)
    env = quiet_env(emu, f"sqlite:///{tmp_path / 'r.db'}",
                    write_policy(tmp_path / "p.toml", [app]))
    assert run_rotator(["scan"], env).returncode == 0
    out = tmp_path / "report.csv"

    on_tty = run_on_terminal(["report", "--format", "csv", "-o", str(out)], env)
    assert on_tty.returncode == 0, on_tty.stderr
    assert re.search(r"\rreport: reading the inventory, rotations and scans · \d+\.\d s",
                     on_tty.stderr), on_tty.stderr
    assert f"wrote {out} (csv" in on_tty.stderr and app.app_id in out.read_text()
    piped = run_rotator(["report", "--format", "csv"], env)
    assert piped.returncode == 0 and app.app_id in piped.stdout
    assert "report:" not in piped.stderr
    assert_no_progress(piped.stderr)

    alerts = run_on_terminal(["alerts", "run"], env)
    assert alerts.returncode == 0, alerts.stderr
    assert re.search(r"\ralerts: reading the inventory, rotations and scans · \d+\.\d s",
                     alerts.stderr), alerts.stderr
    assert "alert(s) in scope" in alerts.stdout
    as_json = run_on_terminal(["alerts", "run", "--json"], env)
    assert as_json.returncode == 0, as_json.stderr
    json.loads(as_json.stdout)
    assert_no_progress(as_json.stderr)


def test_status_says_what_needs_the_admin(calm_emu: RunningEmulator, database_url: str,
                                          tmp_path: Path) -> None:
    emu = calm_emu
    failing = make_app(emu, owned=False, days_left=10, name=f"failing-{uuid.uuid4().hex[:8]}")
    flying = make_app(emu, days_left=10, name=f"flying-{uuid.uuid4().hex[:8]}")
    due = make_app(emu, days_left=3, name=f"due-{uuid.uuid4().hex[:8]}")
    fine = make_app(emu, days_left=200, name=f"fine-{uuid.uuid4().hex[:8]}")
    env = quiet_env(emu, database_url,
                    write_policy(tmp_path / "p.toml", [failing, flying, due, fine]))
    assert run_rotator(["scan"], env).returncode == 0
    failed = json.loads(run_rotator(["rotate", "--app", failing.app_id, "--json"], env).stdout)
    assert failed["state"] == "failed"
    between = datetime.now(UTC)
    time.sleep(0.01)
    flown = json.loads(run_rotator(["rotate", "--app", flying.app_id, "--json"], env).stdout)
    assert flown["state"] == "promoted"  # in flight: the old secret waits out its grace

    body = json.loads(run_rotator(["status", "--json"], env).stdout)
    mine = {failing.app_id, flying.app_id, due.app_id, fine.app_id}
    # The keys scripts already read are still there, with what they held.
    assert [r["rotation_id"] for r in body["in_flight"] if r["app_id"] in mine] == [
        flown["rotation_id"]]
    assert body["in_flight"][0]["display_name"] == flying.display_name
    assert [r["rotation_id"] for r in body["failed"] if r["app_id"] in mine] == [
        failed["rotation_id"]]
    assert body["last_scan"]["status"] == "succeeded" and body["last_scan"]["healthy"] is True
    assert body["last_scan"]["age_seconds"] >= 0 and body["last_scan"]["apps"] > 0
    # ... and the new one says what needs attention, most urgent first.
    needs = [(n["need"], n["app_id"]) for n in body["needs_attention"] if n["app_id"] in mine]
    assert needs == [("failed", failing.app_id), ("due", due.app_id),
                     ("in_flight", flying.app_id)]
    by_need = {n["need"]: n for n in body["needs_attention"] if n["app_id"] in mine}
    assert "Authorization_RequestDenied" in by_need["failed"]["detail"]
    assert "grant rotator the access" in by_need["failed"]["what_to_do"]
    assert f"rotator rotate --app {failing.app_id}" in by_need["failed"]["what_to_do"]
    assert by_need["due"]["display_name"] == due.display_name
    assert re.fullmatch(r"secret \S+ expires in \d\.\d days \(renew at 30\)",
                        by_need["due"]["detail"]), by_need["due"]
    assert [d["app_id"] for d in body["due_not_planned"] if d["app_id"] in mine] == [due.app_id]
    assert by_need["in_flight"]["state"] == "promoted"
    assert "old credential retires after" in by_need["in_flight"]["detail"]

    text = run_rotator(["status"], env)
    assert text.returncode == 0, text.stderr
    assert "\x1b[" not in text.stdout  # no colour in a pipe
    assert text.stdout.startswith("last scan: succeeded ")
    lines = text.stdout.splitlines()
    rows = {name: next(ln for ln in lines if name in ln and ln.startswith(("FAILED", "DUE",
                                                                            "in flight")))
            for name in (failing.display_name, due.display_name, flying.display_name)}
    assert rows[failing.display_name].startswith("FAILED") and \
        "Authorization_RequestDenied" in rows[failing.display_name]
    assert rows[due.display_name].startswith("DUE") and "not planned" in rows[due.display_name]
    assert rows[flying.display_name].startswith("in flight") and \
        "promoted" in rows[flying.display_name]
    order = [lines.index(rows[n]) for n in (failing.display_name, due.display_name,
                                             flying.display_name)]
    assert order == sorted(order)
    assert fine.display_name not in text.stdout
    assert f"(rotation {failed['rotation_id']}): grant rotator the access" in text.stdout
    # On a terminal the rows are coloured by what they need, unless NO_COLOR says not to.
    env.pop("NO_COLOR", None)
    coloured = run_on_terminal(["status"], env, stdout_too=True).stderr
    assert f"\x1b[31mFAILED     {failing.display_name}" in coloured, coloured
    assert f"\x1b[33mDUE        {due.display_name}" in coloured, coloured
    plain = run_on_terminal(["status"], {**env, "NO_COLOR": "1"}, stdout_too=True).stderr
    assert "\x1b[" not in plain and f"FAILED     {failing.display_name}" in plain, plain

    # history: the display name beside the id, one rotation, and events since a time.
    hist = run_rotator(["history", "--app", flying.app_id], env)
    assert hist.returncode == 0, hist.stderr
    header, _, *events = hist.stdout.splitlines()
    assert header.split()[:4] == ["AT", "(UTC)", "APP", "APP"]
    assert events and all(flying.display_name in e and flying.app_id in e for e in events)
    one = json.loads(run_rotator(["history", "--rotation", failed["rotation_id"], "--json"],
                                 env).stdout)
    assert one and {e["rotation_id"] for e in one} == {failed["rotation_id"]}
    assert {e["display_name"] for e in one} == {failing.display_name}
    since = json.loads(run_rotator(
        ["history", "--since", between.isoformat().replace("+00:00", "Z"), "--json"],
        env).stdout)
    assert {e["rotation_id"] for e in since if e["rotation_id"]} == {flown["rotation_id"]}
    recent = json.loads(run_rotator(["history", "--since", "1h", "--json"], env).stdout)
    assert {failed["rotation_id"], flown["rotation_id"]} <= {e["rotation_id"] for e in recent}


def test_history_refuses_bad_rotation_ids_and_times(tmp_path: Path) -> None:
    env = {"ROTATOR_DATABASE_URL": f"sqlite:///{tmp_path / 'r.db'}", "PATH": "/usr/bin:/bin"}
    for args, words in [
        (["--rotation", "abc"], "is not a rotation id; expected 32 lower-case hex"),
        (["--rotation", "0F6C1A2B3C4D4E5F8A9B0C1D2E3F4A5B"], "is not a rotation id"),
        (["--rotation", "0f6c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b"], "is not a rotation id"),
        (["--rotation", "0f6c1a2b3c4d4e5f8a9b0c1d2e3f4a5b0"], "is not a rotation id"),
        (["--since", "yesterday"], "a duration back from now (90m, 12h, 7d, 2w)"),
        (["--since", "7y"], "is not an ISO date"),
        (["--since", "2999-01-01"], "days from now"),
        (["--since", "3000000d"], "reaches back more than"),
        (["--since", "2026-13-01"], "is not an ISO date"),
    ]:
        run = run_rotator(["history", *args], env)
        assert run.returncode == 2, (args, run.stderr)
        assert words in run.stderr, (args, run.stderr)
        assert "Traceback" not in run.stderr
        assert not (tmp_path / "r.db").exists()  # refused before anything was opened
