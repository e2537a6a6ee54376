import pytest
import torch

SDE_CONFIGS = ["vp", "subvp", "ve"]


def make_sde(name: str):
    from sde_diffusion.sde import VESDE, VPSDE, SubVPSDE

    return {"vp": VPSDE, "subvp": SubVPSDE, "ve": VESDE}[name]()


@pytest.fixture(params=SDE_CONFIGS)
def sde(request):
    return make_sde(request.param)


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
