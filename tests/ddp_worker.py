"""Run under torchrun by tests/test_train.py: a short training run, then every rank saves its own weights."""

import sys
from pathlib import Path

from safetensors.torch import save_file

from train.config import load_config, merge
from train.distributed import initialise, shutdown
from train import trainer

out, data = Path(sys.argv[1]), sys.argv[2]
config = merge(load_config("lmfn"), {"data": {"crop": 32, "batch_size": 4, "workers": 0},
                                     "train": {"log_every": 1, "save_every": 100}})
context = initialise("cpu")
captured = {}
original = trainer.create_model


def keep(*args, **kwargs):
    captured["model"] = original(*args, **kwargs)
    return captured["model"]


trainer.create_model = keep
trainer.train(model_name="lmfn", data=[data], out=out, config=config, context=context, max_steps=3, progress=False)
state = {k: v.detach().contiguous() for k, v in captured["model"].state_dict().items()}
save_file(state, str(out / f"rank{context.rank}.safetensors"))
shutdown()
