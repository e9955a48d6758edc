"""Request quotas (`--quotas aws`): KMS's published request rates, applied per account and region."""
