"""GLUE: task files and readers (`tasks`), numpy metrics (`metrics`), fine-tuning (`finetune`), reports (`report`).

python -m experiments.finetune_glue --config configs/glue.py --config.pretrained=RUN_DIR --workdir OUT
"""

from came_jax.glue.finetune import finetune_and_evaluate
from came_jax.glue.tasks import TASKS, GlueFormatError, MissingTaskError, get_task, load_task

__all__ = ["TASKS", "GlueFormatError", "MissingTaskError", "finetune_and_evaluate", "get_task", "load_task"]
