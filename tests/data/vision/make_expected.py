# Generates the small vision test images and their expected preprocessing with the Python oracle
# (transformers 5.12.1 SiglipImageProcessor, torchvision backend; PIL 13):
#   cd tests/data/vision && cp <mm-tiny>/image.png . && mkdir -p cfg && cp <mm-tiny>/preprocessor_config.json cfg/
#   /work/shared/oracle/run.sh make_expected.py
# small.png / small.jpg: image.png resized to 97x61 (PIL bilinear), PNG and JPEG (quality 90).
# small-jpg-pil.rgb: PIL's decode of small.jpg (97x61 RGB24), to separate decoder from resize differences.
# Prints the CRC-32 of the uint8 levels (pixel_values * 255, CHW) that tests/test-vision.c expects.
import zlib, json
import numpy as np, torch
from PIL import Image
from transformers import AutoImageProcessor

im = Image.open('image.png').convert('RGB')
small = im.resize((97, 61), Image.BILINEAR)
small.save('small.png')
small.save('small.jpg', quality=90)
np.asarray(Image.open('small.jpg').convert('RGB')).tofile('small-jpg-pil.rgb')
proc = AutoImageProcessor.from_pretrained('cfg')
res = {}
for name in ['small.png', 'small.jpg']:
    pv = proc(Image.open(name).convert('RGB'), return_tensors='pt')['pixel_values'][0]
    levels = torch.round(pv * 255).to(torch.uint8)
    assert torch.equal(levels.float() * torch.tensor(1 / 255, dtype=torch.float32), pv)
    res[name] = zlib.crc32(levels.numpy().tobytes())
print(json.dumps(res))
