import pytest
import torch

from meshgnn.devices import resolve_device
from meshgnn.errors import UserError


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a GPU (CI)")
@pytest.mark.parametrize("option", ["trainer.device=", "--device "])
def test_auto_is_the_cpu_and_cuda_is_one_line_naming_the_option_to_use(option):
    assert resolve_device("auto", option) == torch.device("cpu")
    assert resolve_device("cpu", option) == torch.device("cpu")
    with pytest.raises(UserError, match=f"^{option}cuda:1 but no CUDA GPU is visible; use {option}cpu or {option}auto$"):
        resolve_device("cuda:1", option)
