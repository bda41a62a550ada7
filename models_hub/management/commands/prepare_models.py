from django.core.management.base import BaseCommand

from inference.loading import get_tokenizer
from models_hub.models import ModelListing, Task


class Command(BaseCommand):
    help = (
        "Prepare the published models' tokenizers ahead of the first request (a GGUF "
        "source is converted once to the safetensors cache, which takes a while)."
    )

    def handle(self, *args, **options):
        listings = ModelListing.objects.callable_by(None).exclude(source__startswith="builtin:")
        for listing in listings.filter(task=Task.TEXT_GENERATION):
            get_tokenizer(listing.runtime_spec)
            self.stdout.write(f"Prepared {listing.slug}.")
