{{!-- Included (child scope): the globals it sets stay here. --}}
{{~global "/volume/device" (var "/local/volume/device" "/dev/xvdf")~}}
# state volume for manager {{var "/local/ip"}}: {{var "/volume/device"}} at {{var "/docker/data"}}
mkdir -p {{var "/docker/data"}}
if ! mount {{var "/volume/device"}} {{var "/docker/data"}}; then
  mkfs.ext4 {{var "/volume/device"}} && mount {{var "/volume/device"}} {{var "/docker/data"}}
fi
