"""pySigma plugin discovery must not change what our Sysmon rules match.

pySigma's ``@Pipeline`` decorator is one shared instance: importing another decorated pipeline (plugin
autodiscovery imports pySigma's test pipelines) makes ``sysmon_pipeline()`` return that pipeline, and
Sysmon rules would then fire on any provider's EventID 1.
"""

import subprocess
import sys
import textwrap


def test_sysmon_channel_check_survives_plugin_autodiscovery(tmp_path):
    code = textwrap.dedent(r'''
        import sys, orjson, pathlib
        from ttpscope.detect.runner import detect  # imports the Sysmon pipeline
        import sigma.pipelines.test  # decorated after it: the shared decorator now answers with this one
        from sigma.plugins import InstalledSigmaPlugins
        InstalledSigmaPlugins.autodiscover()
        d = pathlib.Path(sys.argv[1])
        (d / "r.yml").write_text("title: whoami\nid: 00000000-0000-0000-0000-0000000000b1\nlevel: high\n"
            "logsource:\n    category: process_creation\n    product: windows\n"
            "detection:\n    sel:\n        Image|endswith: '\\whoami.exe'\n    condition: sel\n")
        events = [
            {"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 1, "Image": "C:\\x\\whoami.exe"},
            {"Channel": "Application", "SourceName": "SomeApp", "EventID": 1, "Image": "C:\\x\\whoami.exe"},
        ]
        (d / "e.jsonl").write_bytes(b"\n".join(orjson.dumps(e) for e in events))
        result = detect(d / "e.jsonl", d / "r.yml", cache=False)
        print(sorted(x.record for x in result.detections))
    ''')
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[1]"  # the Sysmon event only, not the Application one
