"""A throw-away PKI for the OICP chain on one machine (demo and tests): Hubject's CA chain and
the four leaf certificates of mutual TLS in both directions.

OICP 2.3 fact sheet §10 (Security): the CPO authenticates toward Hubject with a client
certificate signed by Hubject's CA, and trusts Hubject's root **and** intermediate CA (the
server certificate is not from a public CA); Hubject compares the OperatorID of each request
with the certificate (else 017). Toward the CPO, Hubject presents its own certificate.

So this module makes, with trustme:

- one root CA ("Hubject Sim Root CA") and one intermediate CA signed by it;
- ``ca-chain.pem``: root AND intermediate in one file (what the bridge's ``--hubject-ca`` and
  the simulator's ``--client-ca`` trust); ``ca-root.pem``: the root alone;
- leaf certificates signed by the intermediate, valid for ``127.0.0.1``, ``::1`` and
  ``localhost``, each with a chain file (leaf then intermediate) and a key file:

  ============== ========================================================== =================
  name           what it is                                                 CN / O
  ============== ========================================================== =================
  hubject_server the Hubject simulator's HTTPS server certificate           localhost
  hubject_client the client certificate Hubject uses when calling the CPO   Hubject
  cpo_client     the bridge's client certificate toward Hubject             the operator id
  cpo_server     the bridge's server certificate (endpoints Hubject calls)  localhost
  ============== ========================================================== =================

  trustme marks every leaf for both serverAuth and clientAuth, so any leaf works either side.

Command line (the demo): ``python -m host_sim.pki DIR [--operator-id DE*SIM]`` writes the
files into DIR and prints the JSON of :func:`make_pki`'s result on one line (the
(chain, key) pairs become two-element arrays).
"""

import argparse
import json
import os
import ssl

import trustme

#: Leaves made by default: name -> (common name, organization). ``{op}`` is the operator id.
DEFAULT_LEAVES = {
    "hubject_server": ("localhost", "Hubject Simulator"),
    "hubject_client": ("Hubject", "Hubject Simulator"),
    "cpo_client": ("{op}", "{op}"),
    "cpo_server": ("localhost", "{op}"),
}

#: The addresses every leaf is valid for (loopback only: this PKI is for one machine).
IDENTITIES = ("127.0.0.1", "::1", "localhost")


def make_pki(directory, names=tuple(DEFAULT_LEAVES), operator_id="DE*SIM"):
    """Write the CA chain and the leaves ``names`` into ``directory`` (created if missing).

    ``names``: an iterable of leaf names; a name from :data:`DEFAULT_LEAVES` gets its CN/O from
    there, any other name gets CN = the name. ``operator_id`` fills ``{op}`` (the OperatorID
    Hubject expects in the CPO's client certificate, fact sheet §10).

    Returns a dict of absolute paths (str)::

        {"ca": ".../ca-chain.pem",          # root + intermediate, PEM, one file
         "ca_root": ".../ca-root.pem",      # root alone
         "hubject_server": (".../hubject_server-chain.pem", ".../hubject_server-key.pem"),
         "hubject_client": (chain, key), "cpo_client": (chain, key), "cpo_server": (chain, key)}

    Each ``*-chain.pem`` holds the leaf first, then the intermediate, so a peer trusting only
    the root can still verify it. Keys are unencrypted PEM (ECDSA P-256), mode 0600.
    """
    os.makedirs(directory, exist_ok=True)
    root = trustme.CA(organization_name="Hubject Sim Root CA")
    inter = root.create_child_ca()
    out = {}
    root_pem = root.cert_pem.bytes()
    out["ca_root"] = _write(directory, "ca-root.pem", root_pem)
    out["ca"] = _write(directory, "ca-chain.pem", root_pem + inter.cert_pem.bytes())
    for name in names:
        cn, org = DEFAULT_LEAVES.get(name, (name, "mpevse test"))
        leaf = inter.issue_cert(*IDENTITIES, common_name=cn.format(op=operator_id),
                                organization_name=org.format(op=operator_id))
        chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
        out[name] = (_write(directory, name + "-chain.pem", chain),
                     _write(directory, name + "-key.pem", leaf.private_key_pem.bytes(), 0o600))
    return out


def _write(directory, name, data, mode=0o644):
    path = os.path.abspath(os.path.join(directory, name))
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)
    return path


def client_context(ca, cert=None, key=None):
    """An ``ssl.SSLContext`` for the client side of mutual TLS.

    Verifies the server against ``ca`` (a PEM file, e.g. the chain file) with CERT_REQUIRED and
    host-name checking, TLS 1.2 minimum (fact sheet §10: TLS 1.2 or 1.3); presents ``cert``
    (chain PEM) with ``key`` when given.
    """
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.check_hostname = True
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


def server_context(cert, key, client_ca=None):
    """An ``ssl.SSLContext`` for a TLS server presenting ``cert`` (chain PEM) and ``key``.

    With ``client_ca`` (PEM file) the server REQUIRES a client certificate that verifies
    against it (CERT_REQUIRED: a client without one fails the handshake); without it, plain
    server-side TLS. TLS 1.2 minimum.
    """
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    if client_ca:
        ctx.load_verify_locations(cafile=client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m host_sim.pki", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("directory")
    parser.add_argument("--operator-id", default="DE*SIM")
    args = parser.parse_args(argv)
    print(json.dumps(make_pki(args.directory, operator_id=args.operator_id)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
