"""The URLconf of the prediction event stream's handler (portal.stream_handler): the one
route that handler serves, under the same prefix as in the site's URLconf (portal.urls).

An open stream holds its request, and the request its ResolverMatch, for as long as the
stream is open. Resolved against the site's URLconf, the match keeps a list of every
route tried before the stream's (`ResolverMatch.tried`: 37 lists): 3 KiB of each
idle stream, and that many patterns matched on every open.
"""

from django.urls import include, path

from inference.api.urls import stream_urlpatterns

urlpatterns = [path("api/v1/", include(stream_urlpatterns))]
