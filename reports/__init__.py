"""Report builders (Markdown + matplotlib PNG); generated files go to reports/out/."""
