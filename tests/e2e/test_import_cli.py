"""Importing key material exactly as AWS's developer guide shows it: `openssl rand` for the material, `openssl
pkeyutl` (RSA-OAEP with SHA-256) to wrap it, `openssl enc -id-aes256-wrap-pad` for the RSA_AES_KEY_WRAP procedure,
and the AWS CLI's `get-parameters-for-import` / `import-key-material` with fileb:// — then the imported material is
proven with openssl too (the same HMAC, a KMS signature verified under the locally held public key)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.harness import RunningCluster

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None or shutil.which("xxd") is None,
                                reason="the openssl and xxd commands are needed (AWS's guide uses both)")
REGION = "eu-west-1"


class Shell:
    """bash in one working directory, with `aws` pointing at the cluster (as a user's configured CLI would)."""

    def __init__(self, cluster: RunningCluster, cwd: Path) -> None:
        self.cwd = cwd
        aws = Path(sys.executable).parent / "aws"
        self.env = {**os.environ, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                    "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
                    "AWS_MAX_ATTEMPTS": "1", "AWS_PAGER": "", "AWS_DEFAULT_REGION": REGION,
                    "AWS_ENDPOINT_URL": cluster.gateway_url, "PATH": f"{aws.parent}:{os.environ['PATH']}"}
        self.env.pop("AWS_PROFILE", None)

    def __call__(self, script: str) -> str:
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=self.cwd, env=self.env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{script}\n{done.stderr}"
        return done.stdout.strip()

    def fails(self, script: str) -> str:
        done = subprocess.run(["bash", "-c", script], cwd=self.cwd, env=self.env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode != 0, script
        return done.stderr


def download_parameters(sh: Shell, key_id: str, algorithm: str, spec: str) -> None:
    """Step 2 of the guide: one call for the wrapping public key and its import token, base64-decoded into files."""
    sh(f"""
    aws kms get-parameters-for-import \\
        --key-id {key_id} \\
        --wrapping-algorithm {algorithm} \\
        --wrapping-key-spec {spec} \\
        --query '{{Key:PublicKey,Token:ImportToken}}' \\
        --output text > parameters.txt
    cut -f1 parameters.txt > PublicKey.b64
    cut -f2 parameters.txt > ImportToken.b64
    openssl enc -d -base64 -A -in PublicKey.b64 -out PublicKey.bin
    openssl enc -d -base64 -A -in ImportToken.b64 -out ImportToken.bin
    """)


def import_with_cli(sh: Shell, key_id: str) -> dict[str, str]:
    out: dict[str, str] = json.loads(sh(f"""
    aws kms import-key-material --key-id {key_id} \\
        --encrypted-key-material fileb://EncryptedKeyMaterial.bin \\
        --import-token fileb://ImportToken.bin \\
        --expiration-model KEY_MATERIAL_DOES_NOT_EXPIRE
    """))
    return out


def test_symmetric_key_material_with_openssl_rand_and_pkeyutl(cluster: RunningCluster, tmp_path: Path) -> None:
    sh = Shell(cluster, tmp_path)
    key_id = sh("aws kms create-key --origin EXTERNAL --query KeyMetadata.KeyId --output text")
    assert sh(f"aws kms describe-key --key-id {key_id} --query KeyMetadata.KeyState --output text") == "PendingImport"
    download_parameters(sh, key_id, "RSAES_OAEP_SHA_256", "RSA_4096")
    sh("""
    openssl rand -out PlaintextKeyMaterial.bin 32
    openssl pkeyutl \\
        -encrypt \\
        -in PlaintextKeyMaterial.bin \\
        -out EncryptedKeyMaterial.bin \\
        -inkey PublicKey.bin \\
        -keyform DER \\
        -pubin \\
        -pkeyopt rsa_padding_mode:oaep \\
        -pkeyopt rsa_oaep_md:sha256 \\
        -pkeyopt rsa_mgf1_md:sha256
    """)
    imported = import_with_cli(sh, key_id)
    assert imported["KeyId"].endswith(key_id) and len(imported["KeyMaterialId"]) == 64
    sh(f"""
    printf 'imported secret' > plain.txt
    aws kms encrypt --key-id {key_id} --plaintext fileb://plain.txt --query CiphertextBlob --output text \\
        | base64 --decode > cipher.bin
    aws kms delete-imported-key-material --key-id {key_id}
    """)
    assert "KMSInvalidStateException" in sh.fails("aws kms decrypt --ciphertext-blob fileb://cipher.bin")
    # Reimport the same bytes (fresh parameters, the other wrapping algorithm): the old ciphertext opens again.
    download_parameters(sh, key_id, "RSAES_OAEP_SHA_1", "RSA_2048")
    sh("""openssl pkeyutl -encrypt -in PlaintextKeyMaterial.bin -out EncryptedKeyMaterial.bin -inkey PublicKey.bin \\
        -keyform DER -pubin -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha1""")
    assert import_with_cli(sh, key_id)["KeyMaterialId"] == imported["KeyMaterialId"]
    plain = sh("aws kms decrypt --ciphertext-blob fileb://cipher.bin --query Plaintext --output text | base64 -d")
    assert plain == "imported secret"


def test_hmac_key_material_gives_the_mac_openssl_computes(cluster: RunningCluster, tmp_path: Path) -> None:
    sh = Shell(cluster, tmp_path)
    key_id = sh("aws kms create-key --origin EXTERNAL --key-spec HMAC_256 --key-usage GENERATE_VERIFY_MAC "
                "--query KeyMetadata.KeyId --output text")
    download_parameters(sh, key_id, "RSAES_OAEP_SHA_256", "RSA_3072")
    sh("""openssl rand -out PlaintextKeyMaterial.bin 32
    openssl pkeyutl -encrypt -in PlaintextKeyMaterial.bin -out EncryptedKeyMaterial.bin -inkey PublicKey.bin \\
        -keyform DER -pubin -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256""")
    import_with_cli(sh, key_id)
    kms_mac = sh(f"""printf 'the message' > msg.txt
    aws kms generate-mac --key-id {key_id} --mac-algorithm HMAC_SHA_256 --message fileb://msg.txt \\
        --query Mac --output text | base64 -d | xxd -p | tr -d '\\n'""")
    local_mac = sh("""KEY_HEX=$(xxd -p < PlaintextKeyMaterial.bin | tr -d '\\n')
    openssl dgst -sha256 -mac HMAC -macopt hexkey:$KEY_HEX -r msg.txt | cut -d' ' -f1""")
    assert kms_mac == local_mac and len(local_mac) == 64


@pytest.mark.parametrize(("spec", "genpkey", "signing", "digest"), [
    ("RSA_2048", "-algorithm RSA -pkeyopt rsa_keygen_bits:2048", "RSASSA_PKCS1_V1_5_SHA_256", "-sha256"),
    ("ECC_NIST_P384", "-algorithm EC -pkeyopt ec_paramgen_curve:P-384", "ECDSA_SHA_384", "-sha384"),
])
def test_asymmetric_key_material_with_the_rsa_aes_key_wrap_procedure(cluster: RunningCluster, tmp_path: Path,
                                                                     spec: str, genpkey: str, signing: str,
                                                                     digest: str) -> None:
    sh = Shell(cluster, tmp_path)
    key_id = sh(f"aws kms create-key --origin EXTERNAL --key-spec {spec} --key-usage SIGN_VERIFY "
                "--query KeyMetadata.KeyId --output text")
    download_parameters(sh, key_id, "RSA_AES_KEY_WRAP_SHA_256", "RSA_4096")
    sh(f"""
    openssl genpkey {genpkey} -out private.pem
    openssl pkcs8 -topk8 -inform PEM -outform DER -in private.pem -out PrivateKey.der -nocrypt
    openssl pkey -in private.pem -pubout -out public.pem
    openssl rand -out aes-key.bin 32
    openssl enc -id-aes256-wrap-pad \\
        -K "$(xxd -p < aes-key.bin | tr -d '\\n')" \\
        -iv A65959A6 \\
        -in PrivateKey.der \\
        -out key-material-wrapped.bin
    openssl pkeyutl \\
        -encrypt \\
        -in aes-key.bin \\
        -out aes-key-wrapped.bin \\
        -inkey PublicKey.bin \\
        -keyform DER \\
        -pubin \\
        -pkeyopt rsa_padding_mode:oaep \\
        -pkeyopt rsa_oaep_md:sha256 \\
        -pkeyopt rsa_mgf1_md:sha256
    cat aes-key-wrapped.bin key-material-wrapped.bin > EncryptedKeyMaterial.bin
    """)
    import_with_cli(sh, key_id)
    verified = sh(f"""printf 'signed by kms' > msg.txt
    aws kms sign --key-id {key_id} --message fileb://msg.txt --message-type RAW --signing-algorithm {signing} \\
        --query Signature --output text | base64 -d > sig.bin
    openssl dgst {digest} -verify public.pem -signature sig.bin msg.txt""")
    assert verified == "Verified OK"
    if spec.startswith("RSA_"):
        # An RSA private key needs the AES procedure: RSA-OAEP alone is refused as AWS refuses it.
        assert "ValidationException" in sh.fails(
            f"aws kms get-parameters-for-import --key-id {key_id} --wrapping-algorithm RSAES_OAEP_SHA_256 "
            "--wrapping-key-spec RSA_4096")
