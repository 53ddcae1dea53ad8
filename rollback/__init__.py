"""mlrollback: safe SageMaker model rollouts and fast automatic rollbacks.

The Lambda runtime (``rollback.runtime.handler`` and what it imports) uses only the standard
library and boto3. The operator CLI, the sandbox and the Pulumi program live beside it
but are never imported on the Lambda path.
"""

from __future__ import annotations

__version__ = "0.1.0"
