"""Custom key stores of the AWS_CLOUDHSM type: their records, the HSM clusters they connect to (PKCS#11 tokens,
node/hsm), and the one service per region that connects them and runs their keys' cryptography in the token."""
