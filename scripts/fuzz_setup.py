#!/usr/bin/env python3
"""Fixtures for scripts/fuzz-api: one fresh clinic per role, staffed and with real records,
so that the fuzzer's requests reach data. Prints the role's access token, then one
`FUZZ_<RECORD>_ID=<uuid>` line per record (the clinic, a patient, an appointment, the doctor, a
department), which scripts/fuzz-api exports for scripts/fuzz-api.toml.

    fuzz_setup.py BASE_URL PLATFORM_EMAIL PLATFORM_PASSWORD ROLE CODE

ROLE is platform_admin, clinic_admin, doctor, nurse, receptionist or auditor. Every role gets a
clinic of its own (code CODE; the platform admin's is the one its clinic operations act on), so
that what one role's run changes (a deactivated doctor, a closed department, a suspended
clinic) cannot disturb another's. Standard library only.
"""

import datetime
import json
import sys
import time
import urllib.error
import urllib.request

PASSWORD = "fuzzing passphrase 0123456789"


def call(base, method, path, token=None, body=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", "Bearer " + token)
    for name, value in (headers or {}).items():
        req.add_header(name, value)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw = resp.read()
            return resp.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as err:
        raw = err.read()
        sys.exit(f"fuzz setup: {method} {path} answered {err.code}: {raw[:500]!r}")


def login(base, email, password):
    _, body = call(base, "POST", "/v1/auth/login", body={"email": email, "password": password})
    return body["access_token"]


def main():
    base, platform_email, platform_password, role, code = sys.argv[1:6]
    platform = login(base, platform_email, platform_password)
    admin_email = f"admin@{code}.example".lower()
    _, clinic = call(base, "POST", "/v1/clinics", platform, {
        "name": f"Fuzz clinic {code}",
        "code": code,
        "time_zone": "Europe/Berlin",
        "plan": "professional",
        "admin": {"name": "Admin Person", "email": admin_email, "password": PASSWORD},
    })
    admin = login(base, admin_email, PASSWORD)
    day = [{"start": "00:00", "end": "23:59"}]
    ids = {}
    for member in ["doctor", "nurse", "receptionist", "auditor"]:
        body = {
            "name": f"{member} person",
            "email": f"{member}@{code}.example".lower(),
            "role": member,
            "password": PASSWORD,
        }
        if member == "doctor":
            body["licence_number"] = "LIC-1"
            body["specialty"] = "general practice"
        _, hired = call(base, "POST", "/v1/staff", admin, body)
        ids[member] = hired["id"]
    call(base, "PUT", f"/v1/staff/{ids['doctor']}/working-hours", admin,
         {d: day for d in ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]})
    call(base, "PUT", "/v1/clinic/fees", admin,
         {"currency": "EUR", "default_fee": 5000, "no_show_fee": 2000},
         headers={"if-match": '"0"'})
    desk = login(base, f"receptionist@{code}.example".lower(), PASSWORD)
    _, patient = call(base, "POST", "/v1/patients", desk, {
        "name": {"given": "Ada", "family": "Example"},
        "birth_date": "1984-02-29",
        "sex": "female",
        "phone": "+49 30 1234567",
    })
    # Bookings in the future, relative to the server's own clock (this is a fixture, not a
    # test's business date).
    start = datetime.datetime.now(datetime.timezone.utc).replace(
        minute=0, second=0, microsecond=0) + datetime.timedelta(days=3)
    appointments = []
    for n in range(2):
        at = start + datetime.timedelta(hours=n)
        _, booked = call(base, "POST", "/v1/appointments", desk, {
            "patient_id": patient["id"],
            "doctor_id": ids["doctor"],
            "start": at.isoformat().replace("+00:00", "Z"),
            "end": (at + datetime.timedelta(minutes=30)).isoformat().replace("+00:00", "Z"),
        })
        appointments.append(booked["id"])
    # The clinic's departments, once the read model has them.
    departments = []
    for _ in range(100):
        _, own = call(base, "GET", "/v1/clinic", admin)
        departments = own.get("departments") or []
        if departments:
            break
        time.sleep(0.05)
    if role == "platform_admin":
        print(platform)
    elif role == "clinic_admin":
        print(admin)
    else:
        print(login(base, f"{role}@{code}.example".lower(), PASSWORD))
    # The records' ids, for the operations whose path names one (scripts/fuzz-api.toml reads
    # them from the environment): the fuzzer reaches real records there, not only 404s.
    print(f"FUZZ_CLINIC_ID={clinic['id']}")
    print(f"FUZZ_PATIENT_ID={patient['id']}")
    print(f"FUZZ_APPOINTMENT_ID={appointments[1]}")
    print(f"FUZZ_DOCTOR_ID={ids['doctor']}")
    print(f"FUZZ_DEPARTMENT_ID={departments[0]['department_id']}")


if __name__ == "__main__":
    main()
