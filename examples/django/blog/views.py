from django.http import Http404, JsonResponse

from .caching import ORDERS, get_article, get_author_articles
from .models import Article


def article_detail(request, pk):
    try:
        return JsonResponse(get_article(pk))
    except Article.DoesNotExist:
        raise Http404("no such article")


def author_articles(request, author_id):
    order = request.GET.get("order", "new")
    if order not in ORDERS:
        raise Http404("no such order")
    return JsonResponse({"author_id": author_id, "articles": get_author_articles(author_id, order)})
