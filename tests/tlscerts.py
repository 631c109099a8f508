"""Certificates openssl makes for the TLS tests: a CA, a server certificate it
signed for 127.0.0.1 (CN 'db.internal'), a CA directory hashed the way openssl's
-CApath wants it, and a second CA that signed nothing here (an unknown CA)."""
import shutil
import subprocess


def make(where):
    """The files under ``where`` (a pathlib.Path): {"ca", "capath", "cert", "key", "other_ca"}."""
    openssl = shutil.which("openssl")
    assert openssl, "openssl is required (scripts/setup.d/20-handlers.sh installs it)"

    def run(*args):
        subprocess.run([openssl, *args], check=True, capture_output=True, cwd=where)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test CA",
        "-keyout", "ca.key", "-out", "ca.pem")
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=other CA",
        "-keyout", "other-ca.key", "-out", "other-ca.pem")
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=db.internal",
        "-keyout", "server.key", "-out", "server.csr")
    (where / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "ext.cnf", "-out", "server.pem")
    capath = where / "capath"
    capath.mkdir()
    shutil.copy(where / "ca.pem", capath / "ca.pem")
    run("rehash", str(capath))
    return {"ca": str(where / "ca.pem"), "capath": str(capath), "other_ca": str(where / "other-ca.pem"),
            "cert": str(where / "server.pem"), "key": str(where / "server.key")}
