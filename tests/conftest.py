import pytest
import torch

SDE_CONFIGS = ["vp", "subvp", "ve"]

# The tests run in parallel workers (pytest -n 2 on 2 cores) on small tensors: intra-op
# threads would only contend (an elementwise op on 5000 floats measured 5.8 ms with two
# contending threads against 1.7 us with one), so each worker uses one thread.
torch.set_num_threads(1)


def make_sde(name: str):
    from sde_diffusion.sde import VESDE, VPSDE, SubVPSDE

    return {"vp": VPSDE, "subvp": SubVPSDE, "ve": VESDE}[name]()


@pytest.fixture(params=SDE_CONFIGS)
def sde(request):
    return make_sde(request.param)


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
