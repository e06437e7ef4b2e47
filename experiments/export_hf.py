r"""Exports a pretraining run to a Hugging Face folder.

  python -m experiments.export_hf --workdir RUN_DIR --out HF_DIR [--step N]

GPT-2 -> GPT2LMHeadModel, T5 -> T5ForConditionalGeneration, original-layout BERT -> BertForMaskedLM, each with
config.json, model.safetensors, tokenizer.model and tokenizer_config.json. A crammed BERT (pre-LN, gated GELU, ...:
what BertForMaskedLM cannot express) -> CameBertForMaskedLM, whose modeling files (configuration_came_bert.py,
modeling_came_bert.py) are written into the folder too, so it loads with remote code enabled:

  from transformers import AutoModelForMaskedLM, AutoTokenizer
  model = AutoModelForMaskedLM.from_pretrained("HF_DIR", trust_remote_code=True)
  tokenizer = AutoTokenizer.from_pretrained("HF_DIR")

See came_jax/export.py.
"""

from absl import app, flags, logging

from came_jax import cli, export

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Pretraining run directory (experiments/pretrain.py --workdir).")
flags.DEFINE_string("out", None, "Output folder for the Hugging Face files.")
flags.DEFINE_integer("step", None, "Checkpoint step to export (default: the latest).")
flags.mark_flags_as_required(["workdir", "out"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Too many command-line arguments: {argv[1:]}")
  # Progress and results from came_jax at INFO; other libraries (orbax, jax) at WARNING unless --verbosity says.
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  try:
    out = export.export_run(FLAGS.workdir, FLAGS.out, FLAGS.step)
  except (FileNotFoundError, ValueError) as e:  # no run, no conversion for the model, a tokenizer that does not fit
    raise SystemExit(f"Not exported: {e}") from None
  print(f"Exported {FLAGS.workdir} to {out}")


if __name__ == "__main__":
  cli.run(main)
