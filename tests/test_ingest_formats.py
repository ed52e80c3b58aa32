"""Log formats beyond Windows (ttpscope.ingest.formats): real OTRF cross-environment data (Zeek TSV and JSON,
CloudTrail, raw auditd, Sysmon for Linux and auoms inside Sentinel syslog rows) read, recognised as the Sigma
log sources SigmaHQ's rules name, with their entity fields; hand-built bad inputs rejected by file and line
with the good records kept; the other cloud and identity families recognised from their documented shapes."""

from __future__ import annotations

import collections
import gzip
import io
import tarfile
import zipfile
from pathlib import Path

import orjson
import pytest

from ttpscope.ingest import EventReader, expand_sources
from ttpscope.ingest import readers
from ttpscope.ingest.base import IngestStats
from ttpscope.ingest.logsource import LogSource, recognise
from ttpscope.ingest.sniff import sniff

OTRF = "otrf-cross-environment"


def flat_records(path: Path):
    """Every (source stats, flat record) of one input, through the ingest's own member/format dispatch."""
    out, all_stats = [], []
    file_stats = IngestStats(str(path), "file")
    for member in readers.open_members(path, file_stats):
        stats = IngestStats(member.name, member.format)
        all_stats.append(stats)
        try:
            out.extend((stats, fields) for _, fields in readers.read(member.format, member.opener(), stats))
        finally:
            member.stream.close()
    assert file_stats.rejected == 0, file_stats.samples
    return out, all_stats


def counted(all_stats, n):
    read = sum(s.read for s in all_stats)
    assert read == sum(s.accepted for s in all_stats) + sum(s.rejected for s in all_stats)
    assert sum(s.accepted for s in all_stats) == n
    return read


def sources(records):
    return collections.Counter(recognise(f)[1].label() for _, f in records)


def entity(fields, kind):
    family, _ = recognise(fields)
    return family.entity(fields, kind) if family else None


# ---------------------------------------------------------------------------------------------- Zeek
def test_zeek_tsv_from_the_lsass_campaign(shared_data):
    path = shared_data / OTRF / "compound/LSASS_campaign_01/metasploit_logonpasswords_lsass_memory_dump_zeek_logs.zip"
    records, all_stats = flat_records(path)
    assert {s.format for s in all_stats} == {"zeek-tsv"}  # members named *.log, recognised by content
    counted(all_stats, len(records))
    labels = sources(records)
    assert labels["zeek/conn"] == 112 and labels["zeek/dns"] == 96 and labels["zeek/kerberos"] == 10
    assert all(label.startswith("zeek/") for label in labels)
    conn = next(f for _, f in records if f.get("_path") == "conn")
    assert entity(conn, "src_ip") == "192.168.1.41" and entity(conn, "dst_ip") == "192.168.1.4"
    assert entity(conn, "time") == "2023-08-16T04:53:42.036086Z"  # epoch ts → ISO UTC
    assert conn["local_orig"] == "true" and "duration" not in conn  # T → true, "-" → missing
    dns = [f for _, f in records if f.get("_path") == "dns"]
    assert dns[0]["rejected"] == "true" and "query" not in dns[0]  # a SERVFAIL without a query name
    assert any(f.get("query") for f in dns)


def test_zeek_json_of_apt29_has_its_paths_and_rule_names(shared_data):
    path = shared_data / OTRF / "compound/apt29/day1/zeek/SCRANTON-zeek_logs.zip"
    records, all_stats = flat_records(path)
    counted(all_stats, len(records))
    assert {s.format for s in all_stats} == {"jsonl"}
    labels = sources(records)
    assert labels["zeek/conn"] == 134 and labels["zeek/dce_rpc"] == 66 and labels["zeek/smb_files"] == 6
    assert sum(labels.values()) == len(records)  # every record recognised
    family, source = recognise(next(f for _, f in records if f.get("@stream") == "dce_rpc"))
    assert source == LogSource("zeek", "dce_rpc") and family.renames["id_orig_h"] == "id.orig_h"
    conn = next(f for _, f in records if f.get("@stream") == "conn")
    assert conn["ts"].startswith("2020-04-30T") and entity(conn, "src_ip") == conn["id_orig_h"]


def test_zeek_wrong_column_count_is_rejected_by_line(tmp_path):
    good = "\t".join(["1588205198.899710", "Cw1Hz43", "10.0.1.4", "64842", "10.0.0.4", "53", "udp"])
    log = tmp_path / "conn.log"
    log.write_text("#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n"
                   "#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\n"
                   "#types\ttime\tstring\taddr\tport\taddr\tport\tenum\n"
                   f"{good}\n1588205199.1\tCx\t10.0.1.5\t1\n{good}\n#close\t2020-05-01\n")
    assert sniff(log).format == "zeek-tsv"
    reader = EventReader([tmp_path])  # a folder: the .log file is found by its content
    events = [row for batch in reader.batches() for row in batch.table.to_pylist()]
    (stats,) = reader.stats
    assert (stats.read, stats.accepted, stats.rejected) == (3, 2, 1) and len(events) == 2
    record, problem = stats.samples[0]
    assert record == 9 and "line 9" in problem and "4 columns" in problem and stats.source == str(log)


# ---------------------------------------------------------------------------------------------- CloudTrail
def test_cloudtrail_logstash_lines_from_otrf(shared_data):
    path = shared_data / OTRF / "atomic/aws/collection/ec2_proxy_s3_exfiltration.zip"
    records, all_stats = flat_records(path)
    counted(all_stats, 103)
    assert sources(records) == {"aws/cloudtrail": 103}
    names = collections.Counter(f["eventName"] for _, f in records)
    assert names["GetObject"] or names["ListBuckets"] or names["DescribeInstances"]
    first = records[0][1]
    assert entity(first, "user") == "pedro" and entity(first, "account") == "123456789123"
    assert entity(first, "region") == "us-east-1" and entity(first, "src_ip") == "1.2.3.4"
    assert first["userIdentity.type"] == "IAMUser"  # the dotted names SigmaHQ's CloudTrail rules use


def _trail(eventname, n):
    return {"eventVersion": "1.08", "eventTime": f"2024-05-0{n}T10:00:00Z", "eventSource": "s3.amazonaws.com",
            "eventName": eventname, "awsRegion": "eu-west-1", "sourceIPAddress": f"203.0.113.{n}",
            "userIdentity": {"type": "IAMUser", "userName": "mallory", "accountId": "111122223333"},
            "requestParameters": {"bucketName": "loot"}, "recipientAccountId": "111122223333"}


def test_cloudtrail_records_document_one_event_per_record_and_gz(tmp_path):
    doc = orjson.dumps({"Records": [_trail("ListBuckets", 1), _trail("GetObject", 2), _trail("PutBucketPolicy", 3)]})
    (tmp_path / "plain.json").write_bytes(doc)
    with gzip.open(tmp_path / "111122223333_CloudTrail_eu-west-1_20240501.json.gz", "wb") as fh:
        fh.write(doc)
    for name in ("plain.json", "111122223333_CloudTrail_eu-west-1_20240501.json.gz"):
        records, all_stats = flat_records(tmp_path / name)
        counted(all_stats, 3)
        assert [f["eventName"] for _, f in records] == ["ListBuckets", "GetObject", "PutBucketPolicy"]
        assert sources(records) == {"aws/cloudtrail": 3}
        assert records[1][1]["requestParameters.bucketName"] == "loot"
        assert orjson.loads(records[1][1]["requestParameters"]) == {"bucketName": "loot"}  # whole, for |contains
        assert entity(records[1][1], "user") == "mallory"


def test_cloudtrail_broken_record_is_rejected_the_others_kept(tmp_path):
    good = [orjson.dumps(_trail(n, i)).decode() for i, n in enumerate(("ListBuckets", "GetObject", "DeleteTrail"), 1)]
    broken = '{"eventVersion": "1.08", "eventName": , "eventSource": "s3.amazonaws.com"}'
    path = tmp_path / "trail.json"
    path.write_text('{"Records": [\n' + good[0] + ",\n" + broken + ",\n" + good[1] + ",\n" + good[2] + "\n]}\n")
    reader = EventReader([path])
    events = [row for batch in reader.batches() for row in batch.table.to_pylist()]
    (stats,) = reader.stats
    assert (stats.read, stats.accepted, stats.rejected) == (4, 3, 1)
    assert sorted(e["eventName"] for e in events) == ["DeleteTrail", "GetObject", "ListBuckets"]
    record, problem = stats.samples[0]
    assert record == 2 and "record 2 (line 3)" in problem and stats.source == str(path)


def test_cloudtrail_in_eventbridge_envelope_and_sentinel_table(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(o) for o in (
        {"version": "0", "id": "e1", "detail-type": "AWS API Call via CloudTrail", "source": "aws.iam",
         "account": "111122223333", "region": "us-east-1", "detail": _trail("CreateAccessKey", 4)},
        {"Type": "AWSCloudTrail", "TimeGenerated": "2024-05-05T10:00:00Z", "EventName": "StopLogging",
         "EventSource": "cloudtrail.amazonaws.com", "UserIdentityType": "IAMUser", "UserIdentityUserName": "mallory",
         "SourceIpAddress": "203.0.113.9", "AWSRegion": "eu-west-1", "RecipientAccountId": "111122223333"})))
    records, all_stats = flat_records(path)
    counted(all_stats, 2)
    bridge, sentinel = (f for _, f in records)
    assert recognise(bridge)[1] == recognise(sentinel)[1] == LogSource("aws", "cloudtrail")
    assert bridge["eventName"] == "CreateAccessKey" and bridge["userIdentity.type"] == "IAMUser"
    assert entity(bridge, "user") == "mallory" and entity(sentinel, "user") == "mallory"
    family, _ = recognise(sentinel)
    assert family.renames["UserIdentityType"] == "userIdentity.type" and entity(sentinel, "region") == "eu-west-1"


def test_cloudtrail_document_cut_short_keeps_the_whole_records(tmp_path):
    text = '{"Records": [' + ",".join(orjson.dumps(_trail("GetObject", i)).decode() for i in (1, 2)) + \
           ',{"eventVersion": "1.08", "eventName": "Put'
    path = tmp_path / "cut.json"
    path.write_text(text)
    records, all_stats = flat_records(path)
    (stats,) = all_stats
    assert (stats.read, stats.accepted, stats.rejected) == (3, 2, 1) and len(records) == 2
    assert "record 3" in stats.samples[0][1] and "cut short" in stats.samples[0][1]


# ---------------------------------------------------------------------------------------------- auditd
def test_auditd_atomics_grouped_by_serial_and_hex_decoded(shared_data):
    arp, all_stats = flat_records(shared_data / OTRF / "atomic/linux/discovery/host/sh_arp_cache.zip")
    assert {s.format for s in all_stats} == {"auditd"}
    assert counted(all_stats, 2) == 2  # 12 lines, two audit events
    first = arp[0][1]
    assert first["type"] == "EXECVE" and first["record_types"].split("\n") == ["SYSCALL", "EXECVE", "CWD", "PATH",
                                                                                "PROCTITLE"]
    assert first["a0"] == "arp" and first["a1"] == "-a" and first["proctitle"] == "arp -a"  # hex proctitle decoded
    assert first["exe"] == "/usr/sbin/arp" and first["CommandLine"] == "arp -a" and first["Image"] == "/usr/sbin/arp"
    assert first["syscall"] == "execve" and first["syscall_r"] == "59"  # the name SigmaHQ's SYSCALL: selections use
    assert recognise(first)[1] == LogSource("linux", "auditd", "process_creation")
    assert entity(first, "time") == "2020-11-10T07:48:16.155Z" and first["audit_id"] == "1604994496.155:92733"
    dd, all_stats = flat_records(shared_data / OTRF / "atomic/linux/defense_evasion/host/sh_binary_padding_dd.zip")
    counted(all_stats, 1)
    assert dd[0][1]["proctitle"] == "dd if=/dev/zero bs=1 count=1" and dd[0][1]["a1"] == "if=/dev/zero"


def test_auditd_truncated_line_is_rejected_by_line(tmp_path):
    path = tmp_path / "audit.log"
    path.write_text(
        'type=SYSCALL msg=audit(1700000000.100:10): arch=c000003e syscall=59 success=yes exit=0 ppid=1 pid=42 '
        'uid=0 comm="id" exe="/usr/bin/id" key=(null)\n'
        'type=EXECVE msg=audit(1700000000.100:10): argc=1 a0="id"\n'
        'type=EXECVE msg=audit(1700000001.200:11): argc=2 a0="cat" a1="/etc/sha\n'  # cut inside a value
        'type=PROCTITLE msg=audit(1700000002.30\n'  # cut inside the stamp
        'type=USER_CMD msg=audit(1700000003.000:12): pid=7 uid=1000 cmd=7375646F202D6C terminal=pts/0 res=success\n'
        'type=SYSCALL msg=audit(1700000004.000:13): arch=c000003e syscall=133 success=yes exit=0 pid=9 uid=0 '
        'comm="mknod" exe="/usr/bin/mknod" key="mknod"\x1dARCH=x86_64 SYSCALL=mknod UID="root"\n')
    assert sniff(path).format == "auditd"
    reader = EventReader([tmp_path])
    events = [row for batch in reader.batches() for row in batch.table.to_pylist()]
    (stats,) = reader.stats
    assert (stats.read, stats.accepted, stats.rejected) == (5, 3, 2)
    assert [r for r, _ in stats.samples] == [3, 4] and "line 3" in stats.samples[0][1]
    cmd = next(e for e in events if e.get("type") == "USER_CMD")
    assert cmd["cmd"] == "sudo -l"  # hex-encoded value decoded
    assert {e["type"] for e in events} == {"EXECVE", "USER_CMD", "SYSCALL"}
    mknod = next(e for e in events if e.get("type") == "SYSCALL")  # ENRICHED format
    assert mknod["syscall"] == "mknod" and mknod["uid"] == "0" and mknod["uid_name"] == "root"


# ---------------------------------------------------------------------------------------------- Linux in syslog
LOG4SHELL = OTRF + "/compound/Log4Shell"


def test_sysmon_for_linux_inside_syslog_rows(shared_data):
    path = shared_data / LOG4SHELL / "syslog_sysmon_log4shell_cve2021_44228_jndi_reference.zip"
    records, all_stats = flat_records(path)
    counted(all_stats, 93)
    assert sources(records) == {"linux/process_termination": 50, "linux/process_creation": 31,
                                "linux/network_connection": 6, "linux/file_event": 4, "linux/file_delete": 2}
    shells = [f for _, f in records if f.get("EventID") == "1" and "base64,-d" in (f.get("CommandLine") or "")]
    assert shells, "the reverse shell's process creation is read"
    shell = shells[0]
    assert shell["Image"] == "/bin/bash" and shell["ParentImage"].endswith("/java") and shell["User"] == "tomcat"
    assert entity(shell, "host") == "UBUNTU5" and "SyslogMessage" not in shell
    # syslog cut the long XML short: the whole elements are kept and the event says so
    assert shell.get("EventTruncated") == "true" and shell["ParentCommandLine"].startswith("/usr/lib/jvm")
    net = next(f for _, f in records if f.get("EventID") == "3")
    assert entity(net, "dst_ip") == net["DestinationIp"]


def test_auoms_records_inside_syslog_rows(shared_data):
    path = shared_data / LOG4SHELL / "syslog_auoms_auditd_log4shell_cve2021_44228_jndi_reference.zip"
    records, all_stats = flat_records(path)
    counted(all_stats, 50)
    assert sources(records) == {"linux/auditd/process_creation": 50}
    images = collections.Counter(f["Image"] for _, f in records)
    assert images["/usr/bin/base64"] >= 1
    b64 = next(f for _, f in records if f["Image"] == "/usr/bin/base64")
    assert b64["type"] == "AUOMS_EXECVE" and b64["user"] == "tomcat" and b64["ppid"]
    assert entity(b64, "host") == "UBUNTU5" and entity(b64, "user") == "tomcat"
    assert "Type" not in b64  # the Sentinel table name does not shadow auditd's type (names ignore case)


def test_vm_insights_connections_link_the_linux_host_to_its_peer(shared_data):
    path = shared_data / LOG4SHELL / "vminsights_vmconnection_log4shell_cve2021_44228_jndi_reference.zip"
    records, all_stats = flat_records(path)
    counted(all_stats, 5)
    assert sources(records) == {"azure/vmconnection": 5}
    java = next(f for _, f in records if f.get("ProcessName") == "java")
    assert entity(java, "host") == "UBUNTU5" and entity(java, "dst_ip") == "192.168.2.6"


def test_sentinel_windows_tables_have_their_event_data_unwrapped(shared_data):
    path = shared_data / LOG4SHELL / "sysmon_log4shell_cve2021_44228_java_serialized_object.zip"
    records, all_stats = flat_records(path)  # WindowsEvent rows: EventData as JSON text
    counted(all_stats, 487)
    net = next(f for _, f in records if f["EventID"] == "3")
    assert net["Provider_Name"] == "Microsoft-Windows-Sysmon"
    assert net["Channel"] == "Microsoft-Windows-Sysmon/Operational"
    assert net["DestinationPort"] == "8080" and net["Image"].endswith("tomcat9.exe") and "EventData" not in net
    path = shared_data / LOG4SHELL / "securityauditing_log4shell_cve2021_44228_java_serialized_object.zip"
    records, all_stats = flat_records(path)  # SecurityEvent rows: EventData as XML text
    counted(all_stats, 39)
    wfp = next(f for _, f in records if f["EventID"] == "5156")
    assert wfp["Provider_Name"] == "Microsoft-Windows-Security-Auditing" and wfp["DestAddress"] == "192.168.2.5"
    assert wfp["Application"].endswith("tomcat9.exe") and wfp["Channel"] == "Security"
    proc = next(f for _, f in records if f["EventID"] == "4688")
    assert proc["CommandLine"].startswith("powershell.exe -NonI") and proc["NewProcessName"]


# ---------------------------------------------------------------------------------------------- other families
FAMILY_SHAPES = [
    ({"time": "2024-01-02T03:04:05Z", "resourceId": "/tenants/t1/providers/Microsoft.aadiam",
      "operationName": "Sign-in activity", "category": "SignInLogs", "resultType": "50126",
      "properties.userPrincipalName": "alice@contoso.com", "properties.ipAddress": "198.51.100.7"},
     LogSource("azure", "signinlogs"), {"user": "alice@contoso.com", "src_ip": "198.51.100.7"}),
    ({"Type": "SigninLogs", "TimeGenerated": "2024-01-02T03:04:05Z", "UserPrincipalName": "bob@contoso.com",
      "IPAddress": "198.51.100.8", "ResultType": "0", "TenantId": "t1"},
     LogSource("azure", "signinlogs"), {"user": "bob@contoso.com", "account": "t1"}),
    ({"Type": "AuditLogs", "OperationName": "Add member to role", "TimeGenerated": "2024-01-02T03:04:05Z",
      "InitiatedBy.user.userPrincipalName": "carol@contoso.com"},
     LogSource("azure", "auditlogs"), {"user": "carol@contoso.com"}),
    ({"time": "2024-01-02T03:04:05Z", "resourceId": "/SUBSCRIPTIONS/S1/RESOURCEGROUPS/RG", "category": "Administrative",
      "operationName": "MICROSOFT.KEYVAULT/VAULTS/SECRETS/WRITE", "callerIpAddress": "192.0.2.1"},
     LogSource("azure", "activitylogs"), {"src_ip": "192.0.2.1"}),
    ({"Type": "AzureActivity", "OperationNameValue": "MICROSOFT.PORTAL/CONSOLES/WRITE", "Caller": "dave@contoso.com",
      "SubscriptionId": "s1", "TimeGenerated": "2024-01-02T03:04:05Z"},
     LogSource("azure", "activitylogs"), {"user": "dave@contoso.com", "account": "s1"}),
    ({"CreationTime": "2024-01-02T03:04:05", "Operation": "New-InboxRule", "Workload": "Exchange", "RecordType": "1",
      "UserId": "erin@contoso.com", "ClientIP": "192.0.2.9", "OrganizationId": "o1"},
     LogSource("m365", "audit"), {"user": "erin@contoso.com", "src_ip": "192.0.2.9"}),
    ({"Type": "OfficeActivity", "Operation": "FileDownloaded", "UserId": "erin@contoso.com",
      "TimeGenerated": "2024-01-02T03:04:05Z"}, LogSource("m365", "audit"), {"user": "erin@contoso.com"}),
    ({"protoPayload.@type": "type.googleapis.com/google.cloud.audit.AuditLog",
      "protoPayload.methodName": "google.iam.admin.v1.CreateServiceAccountKey",
      "protoPayload.serviceName": "iam.googleapis.com",
      "protoPayload.authenticationInfo.principalEmail": "frank@example.com", "resource.labels.project_id": "p1",
      "timestamp": "2024-01-02T03:04:05Z"},
     LogSource("gcp", "gcp.audit"), {"user": "frank@example.com", "account": "p1"}),
    ({"eventType": "user.session.start", "published": "2024-01-02T03:04:05Z", "actor.id": "00u1",
      "actor.alternateId": "grace@example.com", "client.ipAddress": "192.0.2.20", "outcome.result": "FAILURE"},
     LogSource("okta", "okta"), {"user": "grace@example.com", "src_ip": "192.0.2.20"}),
    ({"kind": "Event", "apiVersion": "audit.k8s.io/v1", "verb": "create", "objectRef.resource": "pods",
      "user.username": "system:serviceaccount:default:x", "sourceIPs": "10.1.2.3",
      "requestReceivedTimestamp": "2024-01-02T03:04:05Z", "auditID": "a", "requestURI": "/api/v1/pods"},
     LogSource("kubernetes", "audit", "application"), {"user": "system:serviceaccount:default:x"}),
    ({"action": "repo.destroy", "actor": "heidi", "org": "acme", "@timestamp": "1704164645000",
      "_document_id": "x"}, LogSource("github", "audit"), {"user": "heidi", "account": "acme"}),
]


@pytest.mark.parametrize("fields,source,entities", FAMILY_SHAPES)
def test_cloud_and_identity_families(fields, source, entities):
    family, got = recognise(fields)
    assert got == source
    renamed = {family.renames.get(k, k): v for k, v in fields.items()}
    for kind, value in entities.items():  # entities resolve before and after the family's renames
        assert family.entity(fields, kind) == value and family.entity(renamed, kind) == value


def test_family_renames_give_the_rules_names():
    fields = FAMILY_SHAPES[0][0]
    family, _ = recognise(fields)
    assert family.renames["properties.authenticationRequirement"] == "AuthenticationRequirement"
    renamed = {family.renames.get(k, k): v for k, v in fields.items()}  # as the ingest applies them
    assert recognise(renamed)[1] == LogSource("azure", "signinlogs")
    assert family.entity(renamed, "user") == "alice@contoso.com" and family.entity(renamed, "src_ip") == "198.51.100.7"
    assert renamed["IPAddress"] == "198.51.100.7" and renamed["resultType"] == "50126"
    family, _ = recognise(FAMILY_SHAPES[4][0])
    assert family.renames["OperationNameValue"] == "operationName"
    family, _ = recognise(FAMILY_SHAPES[7][0])
    assert family.renames["protoPayload.methodName"] == "gcp.audit.method_name"


def test_foreign_shapes_stay_unrecognised():
    # an m365 threat-management record names eventSource/eventName too, but is not CloudTrail
    assert recognise({"eventSource": "SecurityComplianceCenter", "eventName": "x", "status": "y"})[1] != \
        LogSource("aws", "cloudtrail")
    assert recognise({"message": "hello", "level": "info"})[1].known is False


def test_folder_of_text_logs_is_found_by_content(tmp_path):
    (tmp_path / "notes.log").write_text("just some words\n")
    (tmp_path / "audit.log").write_text('type=EXECVE msg=audit(1700000000.100:10): argc=1 a0="id"\n')
    assert [p.name for p in expand_sources(tmp_path)] == ["audit.log"]


def test_syslog_text_with_sysmon_for_linux_xml(tmp_path):
    xml = ('<Event><System><Provider Name="Linux-Sysmon"/><EventID>1</EventID><TimeCreated '
           'SystemTime="2022-05-11T18:10:22.003485000Z"/><Channel>Linux-Sysmon/Operational</Channel><Computer>UBUNTU5'
           '</Computer></System><EventData><Data Name="Image">/usr/bin/whoami</Data><Data Name="CommandLine">whoami'
           '</Data><Data Name="ParentImage">/bin/bash</Data></EventData></Event>')
    path = tmp_path / "syslog"
    path.write_text("Nov 10 07:48:16 ubuntu5 sshd[1201]: Failed password for invalid user admin from 203.0.113.5\n"
                    f"May 11 18:10:22 UBUNTU5 sysmon: {xml}\n"
                    "this line is no syslog\n"
                    "<86>1 2024-01-02T03:04:05.123Z web01 CRON 4242 - - (root) CMD (run-parts /etc/cron.hourly)\n")
    assert sniff(path).format == "syslog"
    records, all_stats = flat_records(path)
    (stats,) = all_stats
    assert (stats.read, stats.accepted, stats.rejected) == (4, 3, 1) and stats.samples[0][0] == 3
    assert [recognise(f)[1] for _, f in records] == [
        LogSource("linux", "sshd"), LogSource("linux", None, "process_creation"), LogSource("linux", "cron")]
    sysmon = records[1][1]
    assert sysmon["CommandLine"] == "whoami" and sysmon["ParentImage"] == "/bin/bash"
    assert entity(sysmon, "host") == "UBUNTU5" and entity(sysmon, "time") == "2022-05-11T18:10:22.003485000Z"
    assert entity(records[0][1], "host") == "ubuntu5"


def test_s3_honeybucket_export_is_cloudtrail(shared_data):
    records, all_stats = flat_records(shared_data / OTRF / "atomic/aws/discovery/aws_s3_honeybucketlogs.zip")
    counted(all_stats, 301)
    assert sources(records) == {"aws/cloudtrail": 301}
    family, _ = recognise(records[0][1])
    assert family.renames["Event Name"] == "eventName" and entity(records[0][1], "src_ip") == "177.131.167.145"
    assert collections.Counter(f["Event Name"] for _, f in records)["ListObjects"] > 0


def test_epoch_times_become_iso_for_the_timeline(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(o) for o in (
        {"ts": 1588205198.89971, "uid": "C1", "id.orig_h": "10.0.1.4", "id.resp_h": "10.0.0.4", "proto": "udp",
         "conn_state": "SF"},  # Zeek JSON without _path
        {"action": "org.remove_member", "actor": "heidi", "org": "acme", "@timestamp": 1704164645000},
        {"MESSAGE": "Accepted publickey for root", "_HOSTNAME": "web01", "SYSLOG_IDENTIFIER": "sshd",
         "__REALTIME_TIMESTAMP": "1704164645123456"})))
    records, all_stats = flat_records(path)
    counted(all_stats, 3)
    zeek, github, journald = (f for _, f in records)
    assert recognise(zeek)[1] == LogSource("zeek", "conn") and entity(zeek, "time") == "2020-04-30T00:06:38.899710Z"
    assert recognise(github)[1] == LogSource("github", "audit") and entity(github, "time") == "2024-01-02T03:04:05.000Z"
    assert recognise(journald)[1] == LogSource("linux", "sshd")
    assert entity(journald, "time") == "2024-01-02T03:04:05.123456Z" and entity(journald, "host") == "web01"


def test_zeek_logs_in_gz_and_tar_archives_are_sniffed(shared_data, tmp_path):
    with zipfile.ZipFile(shared_data / OTRF / "compound/LSASS_campaign_01/"
                         "metasploit_logonpasswords_lsass_memory_dump_zeek_logs.zip") as zf:
        conn, dns = zf.read("conn.log"), zf.read("dns.log")
    with gzip.open(tmp_path / "conn.04:00:00-05:00:00.log.gz", "wb") as fh:  # Zeek's rotated-log naming
        fh.write(conn)
    with tarfile.open(tmp_path / "zeek.tar.gz", "w:gz") as tf:
        for name, data in (("logs/conn.log", conn), ("logs/dns.log", dns)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    gz, gz_stats = flat_records(tmp_path / "conn.04:00:00-05:00:00.log.gz")
    tar, tar_stats = flat_records(tmp_path / "zeek.tar.gz")
    assert {s.format for s in gz_stats + tar_stats} == {"zeek-tsv"}
    counted(gz_stats, 112)
    counted(tar_stats, 112 + 96)
    assert sources(tar) == {"zeek/conn": 112, "zeek/dns": 96} and sources(gz) == {"zeek/conn": 112}


def test_hostile_event_xml_in_syslog_is_left_alone(tmp_path):
    from ttpscope.ingest.formats.linux import event_xml_fields

    bomb = ('<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
            '<Event><UserData><x>&lol2;</x></UserData></Event>')
    assert event_xml_fields(bomb) is None  # entity declarations are refused by the defused parser
    path = tmp_path / "rows.jsonl"
    path.write_bytes(orjson.dumps({"Type": "Syslog", "SyslogMessage": bomb, "ProcessName": "sysmon",
                                   "HostName": "h", "Computer": "h"}))
    records, all_stats = flat_records(path)
    counted(all_stats, 1)
    (_, row), = records
    assert row["SyslogMessage"] == bomb and recognise(row)[1] == LogSource("linux", "syslog")


# ---------------------------------------------------------------------------------------------- real rules
REAL_RULES = [  # (dataset, SigmaHQ rule, hits): the rule's field names are the ones the formats give
    ("atomic/linux/discovery/host/sh_arp_cache.zip",
     "linux/process_creation/proc_creation_lnx_remote_system_discovery.yml", 1),  # T1018, as the metadata says
    ("atomic/linux/defense_evasion/host/sh_binary_padding_dd.zip",
     "linux/auditd/execve/lnx_auditd_binary_padding.yml", 1),  # T1027.001, as the metadata says
    ("compound/Log4Shell/syslog_sysmon_log4shell_cve2021_44228_jndi_reference.zip",
     "linux/process_creation/proc_creation_lnx_susp_java_children.yml", 1),
    ("compound/Log4Shell/syslog_auoms_auditd_log4shell_cve2021_44228_jndi_reference.zip",
     "linux/process_creation/proc_creation_lnx_base64_decode.yml", 1),
    ("atomic/aws/collection/ec2_proxy_s3_exfiltration.zip", "cloud/aws/cloudtrail/aws_sts_assumerole_misuse.yml", 11),
]


@pytest.mark.parametrize("dataset,rule,hits", REAL_RULES)
def test_real_sigmahq_rules_fire_on_the_real_data(shared_data, dataset, rule, hits):
    import yaml

    from ttpscope.detect.runner import detect

    path = shared_data / "sigma" / "rules" / rule
    logsource = yaml.safe_load(path.read_text(encoding="utf-8"))["logsource"]
    result = detect(shared_data / OTRF / dataset, path, cache=False)
    assert not result.compile_errors and not result.engine_errors
    assert len(result.detections) == hits
    for det in result.detections:  # every hit is on an event whose recognised log source admits the rule
        assert recognise(det.event)[1].admits(logsource)
