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


class UnitNoise:
    """A noise source for exact-variance tests of samplers that are affine in their draws.

    The k-th draw is the unit vector e_(k+1): coordinate k+1 carries draw k alone.
    """

    def __init__(self) -> None:
        self.k = 0

    def normal(self, like: torch.Tensor) -> torch.Tensor:
        z = torch.zeros_like(like)
        z[:, self.k + 1] = 1.0
        self.k += 1
        return z

    def increment(self, t, t_next, like):
        return self.normal(like) * (t_next - t).abs().sqrt()
